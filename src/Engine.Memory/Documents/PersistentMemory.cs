// Owns: a named persistent memory on disk — documents' K/V computed with document-wise RoPE (positions restart at 0
// per document segment), cut into chunks of ChunkSize tokens, each (chunk, layer) in one slot of the disk tier, plus
// one routing key per (chunk, layer): the mean of the chunk's keys, [kvDim] = per KV head means side by side (MSA's
// mean-pooled routing key). Folder layout: header.json (the manifest: format, model identity, shape, documents →
// chunk slots + an XxHash64 per slot, the routing file's name and XxHash64, the manifest's own XxHash64), routing.G.bin
// (float32 [chunks, layers, kvDim] in document/chunk order; G = the save generation), kv.N.bin (DiskKvFile segments),
// lock (MemoryLock: writers exclusive, readers shared, held while open).
// Invariants: the manifest is the single source of truth and is replaced atomically (temp file, fsync, rename); new
// K/V go only into slots the committed manifest does not use (slots freed by Remove are reused only after the next
// Save commits), and each Save writes a new routing.G.bin before the manifest that names it, so a crash at any point
// leaves the last committed state readable. Open verifies everything before use — manifest checksum, token counts,
// file sizes, routing checksum, every slot's checksum — and names the document of a corrupt chunk; the model identity
// must match. Every chunk's pages are F32 [tokens ≤ ChunkSize, kvDim]. Source: MSA (Memory Sparse Attention)
// document-wise RoPE; the commit protocol is the usual shadow-paging one (write elsewhere, then switch one pointer).
using System.IO.Hashing;
using System.Text.Json;
using Engine.Kernels;
using Engine.Memory.Disk;

namespace Engine.Memory.Documents;

/// <summary>What a memory was computed with; a memory can only be used with the same model.</summary>
public sealed record MemoryIdentity(string Architecture, int BlockCount, int EmbeddingLength, int HeadCount, int KvHeadCount,
    int HeadDim, int VocabSize, string TensorHash)
{
    public override string ToString() =>
        $"{Architecture} [{BlockCount} layers, dim {EmbeddingLength}, {HeadCount}/{KvHeadCount} heads × {HeadDim}, vocab {VocabSize}, tensors {TensorHash[..Math.Min(12, TensorHash.Length)]}]";
}

/// <summary>A memory folder that is corrupt, of another format, or of another model.</summary>
public sealed class MemoryFormatException(string path, string problem) : Exception(Engine.Tensors.ErrorText.Clean($"{path}: {problem}"))
{
    public string MemoryPath { get; } = path;
    public string Problem { get; } = problem;
}

public sealed record MemoryDocumentInfo(string Name, int TokenCount, int ChunkCount);

/// <summary>Where a document's keys sit relative to the prompt (both keep document-wise RoPE: each segment computed alone
/// from position 0).</summary>
public enum MemoryPlacement
{
    /// <summary>Keys as computed, at positions 0 .. n-1: queries at small positions see keys "ahead" of them.</summary>
    DocumentLocal,
    /// <summary>Keys re-rotated by −n after the forward (RoPE composes: R(−n)·R(p) = R(p − n)), so each segment sits at
    /// −n .. −1, just before the prompt: one selected document = that document prepended to the prompt. Routing keys
    /// are taken before the rotation (doc-local positions, comparable with the prompt's keys). Default.</summary>
    BeforePrompt,
}

/// <summary>A persistent, disk-backed store of document chunks with routing keys.</summary>
public sealed unsafe class PersistentMemory : IDisposable
{
    private const string Format = "engine-memory/2";
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };
    private readonly List<Doc> _docs = new();
    private readonly List<int> _freeAfterSave = new();
    private readonly List<string> _corrupt = new();        // writable opens only: documents whose K/V fail their checksum   // slots of removed chunks: still used by the committed manifest
    private readonly DiskKvFile _disk;
    private readonly KvPageLayout _chunkLayout;
    private readonly MemoryLock _lock;
    private long _generation;
    private string? _routingFile;
    private int _committedSegments;   // kv segment files the committed manifest needs; later ones are removed on Dispose

    private PersistentMemory(string folder, MemoryIdentity identity, int layerCount, int kvDim, int chunkSize, IEnumerable<int>? used,
        MemoryPlacement placement, MemoryLock memoryLock)
    {
        Folder = folder; Identity = identity; LayerCount = layerCount; KvDim = kvDim; ChunkSize = chunkSize; Placement = placement;
        _lock = memoryLock;
        _chunkLayout = KvPageLayout.Of(KvElementType.F32, chunkSize, kvDim);
        // segments of about 4 MiB: every segment's blocks are reserved on creation (no sparse files), so keep them small
        _disk = new DiskKvFile(Path.Combine(folder, "kv"), _chunkLayout.TotalBytes, SlotsPerSegment(_chunkLayout.TotalBytes), used);
    }

    private static int SlotsPerSegment(long slotBytes) => (int)Math.Clamp((4L << 20) / ((slotBytes + 63) / 64 * 64), 1, 1 << 20);

    public string Folder { get; }
    public MemoryIdentity Identity { get; }
    public int LayerCount { get; }
    public int KvDim { get; }
    public int ChunkSize { get; }
    public MemoryPlacement Placement { get; }
    /// <summary>True when opened for writing (exclusive lock): Add, Remove and Save are allowed.</summary>
    public bool Writable => _lock.Exclusive;
    /// <summary>Incremented by every Add and Remove (lets readers cache per-chunk data).</summary>
    public int Version { get; private set; }
    public long DiskBytes => _disk.UsedBytes;
    /// <summary>The routing-key file the committed manifest names (null before the first Save).</summary>
    public string? RoutingPath => _routingFile == null ? null : Path.Combine(Folder, _routingFile);

    /// <summary>Documents whose stored K/V failed their checksum (only a writable open gets this far; a read-only open throws).
    /// Remove them and add them again.</summary>
    public IReadOnlyList<string> CorruptDocuments => _corrupt;

    public IReadOnlyList<MemoryDocumentInfo> Documents => _docs.Select(d => new MemoryDocumentInfo(d.Name, d.Tokens, d.Chunks.Count)).ToList();

    /// <summary>All chunks in document order (index = chunk id used by routing).</summary>
    public int ChunkCount => _docs.Sum(d => d.Chunks.Count);

    /// <summary>Creates an empty memory in <paramref name="folder"/> (which must not hold one), holding its write lock.</summary>
    public static PersistentMemory Create(string folder, MemoryIdentity identity, int layerCount, int kvDim, int chunkSize = 32,
        MemoryPlacement placement = MemoryPlacement.BeforePrompt, TimeSpan? lockTimeout = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        var held = MemoryLock.Acquire(folder, exclusive: true, lockTimeout);
        try
        {
            if (File.Exists(Path.Combine(folder, "header.json"))) throw new IOException($"{folder} already holds a memory");
            return CreateLocked(folder, identity, layerCount, kvDim, chunkSize, placement, held);
        }
        catch { held.Dispose(); throw; }
    }

    /// <summary>Opens the memory in <paramref name="folder"/> for writing, or creates it when there is none — decided
    /// under the write lock, so two writers starting at once cannot both create it. <paramref name="created"/> tells which.</summary>
    public static PersistentMemory OpenOrCreate(string folder, MemoryIdentity identity, int layerCount, int kvDim, int chunkSize, MemoryPlacement placement,
        out bool created, TimeSpan? lockTimeout = null, CancellationToken cancellationToken = default)
    {
        var held = MemoryLock.Acquire(folder, exclusive: true, lockTimeout, cancellationToken);
        try
        {
            created = !File.Exists(Path.Combine(folder, "header.json"));
            return created ? CreateLocked(folder, identity, layerCount, kvDim, chunkSize, placement, held) : OpenLocked(folder, identity, held);
        }
        catch { held.Dispose(); throw; }
    }

    private static PersistentMemory CreateLocked(string folder, MemoryIdentity identity, int layerCount, int kvDim, int chunkSize,
        MemoryPlacement placement, MemoryLock held)
    {
        var m = new PersistentMemory(folder, identity, layerCount, kvDim, chunkSize, null, placement, held);
        try { m.Save(); }
        catch { m._disk.Dispose(); throw; }
        return m;
    }

    /// <summary>Opens a saved memory — for reading (shared lock; Add/Remove/Save throw) unless <paramref name="writable"/>
    /// (exclusive lock). Everything is verified first (see the file header); with <paramref name="expected"/>, throws
    /// MemoryFormatException unless the model identity matches.</summary>
    public static PersistentMemory Open(string folder, MemoryIdentity? expected = null, bool writable = false, TimeSpan? lockTimeout = null)
    {
        if (!File.Exists(Path.Combine(folder, "header.json"))) throw new MemoryFormatException(folder, "no memory here (header.json missing)");
        var held = MemoryLock.Acquire(folder, writable, lockTimeout);
        try { return OpenLocked(folder, expected, held); }
        catch { held.Dispose(); throw; }
    }

    private static PersistentMemory OpenLocked(string folder, MemoryIdentity? expected, MemoryLock held)
    {
        var h = ReadManifest(folder, out string headerPath);
        if (expected != null && h.Identity != expected)
            throw new MemoryFormatException(folder, $"memory was built with model {h.Identity}, not with this model {expected}");
        var used = new List<int>();
        foreach (var d in h.Documents!) foreach (var c in d.Chunks!) used.AddRange(c.Slots!);
        int chunks = h.Documents!.Sum(d => d.Chunks!.Count);
        string routingPath = Path.Combine(folder, h.RoutingFile!);
        long routingBytes = (long)chunks * h.LayerCount * h.KvDim * 4;
        if (!File.Exists(routingPath) || new FileInfo(routingPath).Length != routingBytes)
            throw new MemoryFormatException(routingPath, $"routing keys missing or of the wrong size (expected {routingBytes} bytes)");
        var keys = File.ReadAllBytes(routingPath);
        if (XxHash64.HashToUInt64(keys) != h.RoutingChecksum)
            throw new MemoryFormatException(routingPath, "routing keys do not match their checksum (corrupted); rebuild the memory");
        PersistentMemory m;
        try { m = new PersistentMemory(folder, h.Identity!, h.LayerCount, h.KvDim, h.ChunkSize, used, h.Placement, held); }
        catch (InvalidDataException e) { throw new MemoryFormatException(folder, e.Message); }
        m._committedSegments = m.SegmentsInUse();
        try
        {
            m._generation = h.Generation;
            m._routingFile = h.RoutingFile;
            var all = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(keys);
            int at = 0, per = h.LayerCount * h.KvDim;
            foreach (var d in h.Documents!)
            {
                var doc = new Doc(d.Name!) { Tokens = d.Tokens };
                int index = 0;
                string? corrupt = null;
                foreach (var c in d.Chunks!)
                {
                    var chunk = new Chunk(c.Tokens, c.Slots!, all.Slice(at * per, per).ToArray(), c.Sums!);
                    for (int l = 0; l < h.LayerCount && corrupt == null; l++)
                        if (m.SlotHash(chunk.Slots[l], chunk.Tokens) != chunk.Sums[l])
                            corrupt = $"document {Engine.Tensors.ErrorText.Quote(d.Name)}: stored K/V of chunk {index}, layer {l} do not match their "
                                + $"checksum (corrupted); remove the document (engine memory rm --memory {Path.GetFileName(folder)} {d.Name}) and add it again";
                    doc.Chunks.Add(chunk);
                    at++; index++;
                }
                m._docs.Add(doc);
                if (corrupt != null)
                {
                    // a reader never sees corrupt data; a writer may open the memory to remove the document
                    if (!held.Exclusive) throw new MemoryFormatException(folder, corrupt);
                    m._corrupt.Add(doc.Name);
                }
            }
        }
        catch { m._disk.Dispose(); throw; }
        return m;
    }

    /// <summary>Reads and checks header.json: format, its own checksum, shape, documents and chunk entries.</summary>
    private static Header ReadManifest(string folder, out string headerPath)
    {
        headerPath = Path.Combine(folder, "header.json");
        Header h;
        try { h = JsonSerializer.Deserialize<Header>(File.ReadAllText(headerPath)) ?? throw new JsonException("null header"); }
        catch (JsonException e) { throw new MemoryFormatException(headerPath, $"corrupt header: {e.Message}"); }
        if (h.Format == "engine-memory/1")
            throw new MemoryFormatException(folder, "this memory was written by an older engine (engine-memory/1, no checksums); "
                + "rebuild it: engine memory rm --memory NAME, then engine memory add again");
        if (h.Format != Format) throw new MemoryFormatException(headerPath, $"format {Engine.Tensors.ErrorText.Quote(h.Format)} is not {Format}");
        ulong stored = h.Checksum;
        h.Checksum = 0;
        if (ManifestHash(h) != stored) throw new MemoryFormatException(headerPath, "corrupt header: it does not match its checksum (edited or damaged)");
        if (h.Identity == null || h.Documents == null || h.LayerCount < 1 || h.KvDim < 1 || h.ChunkSize < 1 || h.RoutingFile == null
            || h.RoutingFile != Path.GetFileName(h.RoutingFile) || !h.RoutingFile.StartsWith("routing."))
            throw new MemoryFormatException(headerPath, "corrupt header: missing identity, documents, shape or routing file");
        foreach (var d in h.Documents)
        {
            if (string.IsNullOrEmpty(d.Name) || d.Chunks == null) throw new MemoryFormatException(headerPath, "corrupt header: document without name or chunks");
            long tokens = 0;
            foreach (var c in d.Chunks)
            {
                if (c.Slots == null || c.Slots.Length != h.LayerCount || c.Sums == null || c.Sums.Length != h.LayerCount || c.Tokens < 1 || c.Tokens > h.ChunkSize)
                    throw new MemoryFormatException(headerPath, $"corrupt header: bad chunk in document {Engine.Tensors.ErrorText.Quote(d.Name)}");
                tokens += c.Tokens;
            }
            if (tokens != d.Tokens)
                throw new MemoryFormatException(headerPath, $"corrupt header: document {Engine.Tensors.ErrorText.Quote(d.Name)} claims {d.Tokens} tokens, its chunks hold {tokens}");
        }
        return h;
    }

    private static ulong ManifestHash(Header h) => XxHash64.HashToUInt64(JsonSerializer.SerializeToUtf8Bytes(h, Json));

    /// <summary>XxHash64 of the K rows then the V rows a chunk of <paramref name="tokens"/> tokens holds in a slot.</summary>
    private ulong SlotHash(int slot, int tokens)
    {
        byte* b = _disk.Pointer(slot);
        long rowBytes = (long)tokens * KvDim * 4;
        var hash = new XxHash64();
        hash.Append(new ReadOnlySpan<byte>(b, (int)rowBytes));
        hash.Append(new ReadOnlySpan<byte>(b + _chunkLayout.VOffset, (int)rowBytes));
        return hash.GetCurrentHashAsUInt64();
    }

    private void RequireWritable()
    {
        if (!Writable) throw new InvalidOperationException($"memory {Folder} was opened for reading; open it writable to change it");
    }

    /// <summary>
    /// Adds (or, with <paramref name="append"/>, extends) document <paramref name="name"/> with one segment of
    /// <paramref name="tokenCount"/> tokens whose K/V were computed at positions 0 .. tokenCount-1. pagesOfLayer(l)
    /// returns the F32 pages covering those positions in layer l. With placement BeforePrompt, rotateKeys(layer, rows,
    /// shift) must rotate the stored key rows [tokens, kvDim] in place by RoPE position shift (= −tokenCount).
    /// Nothing is on disk for good until Save.
    /// </summary>
    public void Add(string name, int tokenCount, Func<int, KvPage[]> pagesOfLayer, bool append = false,
        Action<int, Span<float>, int>? rotateKeys = null)
    {
        RequireWritable();
        if (Placement == MemoryPlacement.BeforePrompt && rotateKeys == null)
            throw new ArgumentException("this memory places documents before the prompt: Add needs a key rotation (RoPE) callback");
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        var doc = _docs.FirstOrDefault(d => d.Name == name);
        if (doc != null && !append) throw new ArgumentException($"memory already holds a document named {Engine.Tensors.ErrorText.Quote(name)} (remove it first)");
        if (doc == null) { doc = new Doc(name); _docs.Add(doc); }
        int chunkCount = (tokenCount + ChunkSize - 1) / ChunkSize;
        var added = new List<Chunk>();
        try
        {
            for (int c = 0; c < chunkCount; c++)
                added.Add(new Chunk(Math.Min(ChunkSize, tokenCount - c * ChunkSize), new int[LayerCount], new float[LayerCount * KvDim], new ulong[LayerCount]));
            foreach (var ch in added) Array.Fill(ch.Slots, -1);
            for (int l = 0; l < LayerCount; l++)
            {
                var pages = pagesOfLayer(l);
                for (int c = 0; c < chunkCount; c++)
                {
                    var ch = added[c];
                    int slot = _disk.Allocate();
                    ch.Slots[l] = slot;
                    byte* block = _disk.Pointer(slot);
                    float* dk = (float*)block, dv = (float*)(block + _chunkLayout.VOffset);
                    var key = ch.RoutingKeys.AsSpan(l * KvDim, KvDim);
                    for (int j = 0; j < ch.Tokens; j++)
                    {
                        int pos = c * ChunkSize + j;
                        float* k = RowOf(pages, pos, key: true), v = RowOf(pages, pos, key: false);
                        Buffer.MemoryCopy(k, dk + (long)j * KvDim, KvDim * 4L, KvDim * 4L);
                        Buffer.MemoryCopy(v, dv + (long)j * KvDim, KvDim * 4L, KvDim * 4L);
                        for (int i = 0; i < KvDim; i++) key[i] += k[i];
                    }
                    for (int i = 0; i < KvDim; i++) key[i] /= ch.Tokens;
                    if (Placement == MemoryPlacement.BeforePrompt) rotateKeys!(l, new Span<float>(dk, ch.Tokens * KvDim), -tokenCount);
                    ch.Sums[l] = SlotHash(slot, ch.Tokens);
                }
            }
        }
        catch
        {
            foreach (var ch in added) foreach (int s in ch.Slots) if (s >= 0) _disk.Free(s);   // never committed: free now
            if (doc.Chunks.Count == 0) _docs.Remove(doc);
            throw;
        }
        doc.Chunks.AddRange(added);
        doc.Tokens += tokenCount;
        Version++;
    }

    private float* RowOf(KvPage[] pages, int pos, bool key)
    {
        foreach (var p in pages)
        {
            if (pos < p.StartPosition || pos >= p.StartPosition + p.TokenCount) continue;
            if (p.Type != KvElementType.F32) throw new NotSupportedException($"memory ingestion needs F32 pages, got {p.Type}");
            return (float*)(key ? p.K : p.V) + (long)(pos - p.StartPosition) * p.RowStride;
        }
        throw new ArgumentException($"the pages do not cover position {pos}");
    }

    /// <summary>Removes a document (its slots become reusable after the next Save); false when there is none of that name.</summary>
    public bool Remove(string name)
    {
        RequireWritable();
        var doc = _docs.FirstOrDefault(d => d.Name == name);
        if (doc == null) return false;
        foreach (var c in doc.Chunks) _freeAfterSave.AddRange(c.Slots);
        _docs.Remove(doc);
        _corrupt.Remove(name);
        Version++;
        return true;
    }

    /// <summary>Chunk <paramref name="chunk"/> (document order) of layer <paramref name="layer"/> as a page read from the mapping.</summary>
    public KvPage ChunkPage(int chunk, int layer, int startPosition)
    {
        var c = ChunkAt(chunk, out _);
        byte* b = _disk.Pointer(c.Slots[layer]);
        return new KvPage((nint)b, (nint)(b + _chunkLayout.VOffset), c.Tokens, startPosition, KvDim);
    }

    /// <summary>Routing key of a chunk in a layer: [kvDim] (KV heads side by side).</summary>
    public ReadOnlySpan<float> RoutingKey(int chunk, int layer) => ChunkAt(chunk, out _).RoutingKeys.AsSpan(layer * KvDim, KvDim);

    /// <summary>Name of the document chunk <paramref name="chunk"/> belongs to.</summary>
    public string DocumentOf(int chunk) { ChunkAt(chunk, out var d); return d.Name; }

    public int ChunkTokens(int chunk) => ChunkAt(chunk, out _).Tokens;

    private Chunk ChunkAt(int chunk, out Doc doc)
    {
        foreach (var d in _docs)
        {
            if (chunk < d.Chunks.Count) { doc = d; return d.Chunks[chunk]; }
            chunk -= d.Chunks.Count;
        }
        throw new ArgumentOutOfRangeException(nameof(chunk), $"chunk id past the {ChunkCount} chunks of the memory");
    }

    /// <summary>Commits: flushes the slots, writes routing.G+1.bin, then atomically replaces the manifest that names it;
    /// then drops the previous routing file and makes removed documents' slots reusable.</summary>
    public void Save()
    {
        RequireWritable();
        _disk.Flush();
        var keys = new float[(long)ChunkCount * LayerCount * KvDim];
        int at = 0;
        foreach (var d in _docs) foreach (var c in d.Chunks) { c.RoutingKeys.CopyTo(keys, at); at += c.RoutingKeys.Length; }
        var keyBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(keys.AsSpan()).ToArray();
        long generation = _generation + 1;
        string routingFile = $"routing.{generation}.bin";
        WriteDurable(Path.Combine(Folder, routingFile), keyBytes);
        var h = new Header
        {
            Format = Format, Identity = Identity, LayerCount = LayerCount, KvDim = KvDim, ChunkSize = ChunkSize, Placement = Placement,
            Generation = generation, RoutingFile = routingFile, RoutingChecksum = XxHash64.HashToUInt64(keyBytes),
            Documents = _docs.Select(d => new DocEntry { Name = d.Name, Tokens = d.Tokens,
                Chunks = d.Chunks.Select(c => new ChunkEntry { Tokens = c.Tokens, Slots = c.Slots, Sums = c.Sums }).ToList() }).ToList(),
        };
        h.Checksum = ManifestHash(h);
        try { WriteDurable(Path.Combine(Folder, "header.json"), JsonSerializer.SerializeToUtf8Bytes(h, Json)); }
        catch { TryDelete(Path.Combine(Folder, routingFile)); throw; }
        // committed
        if (_routingFile != null && _routingFile != routingFile) TryDelete(Path.Combine(Folder, _routingFile));
        TryDelete(Path.Combine(Folder, "routing.bin"));   // engine-memory/1's name
        _generation = generation;
        _routingFile = routingFile;
        foreach (int s in _freeAfterSave) _disk.Free(s);
        _freeAfterSave.Clear();
        _committedSegments = SegmentsInUse();
    }

    private int SegmentsInUse() => _disk.Used.Any() ? _disk.Used.Max() / _disk.SlotsPerSegment + 1 : 0;

    /// <summary>Writes a temp file, fsyncs it, then renames it over <paramref name="path"/> (no temp file is left on failure).</summary>
    private static void WriteDurable(string path, byte[] bytes)
    {
        string tmp = path + ".tmp";
        try
        {
            // PreallocationSize reserves the blocks up front: a full disk fails here, before the rename
            using (var fs = new FileStream(tmp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None, PreallocationSize = bytes.Length }))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch { TryDelete(tmp); throw; }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Closes the files and releases the lock. A writer first removes segment files that only uncommitted
    /// (failed or cancelled) additions used, so nothing half-written stays behind.</summary>
    public void Dispose()
    {
        _disk.Dispose();
        if (Writable)
            for (int n = _committedSegments; File.Exists(_disk.SegmentPath(n)); n++) TryDelete(_disk.SegmentPath(n));
        _lock.Dispose();
    }

    private sealed class Doc(string name)
    {
        public string Name { get; } = name;
        public int Tokens;
        public readonly List<Chunk> Chunks = new();
    }

    private sealed record Chunk(int Tokens, int[] Slots, float[] RoutingKeys, ulong[] Sums);   // Slots, Sums [layer]; RoutingKeys [layer, kvDim]

    private sealed class Header
    {
        public string? Format { get; set; }
        public MemoryIdentity? Identity { get; set; }
        public int LayerCount { get; set; }
        public int KvDim { get; set; }
        public int ChunkSize { get; set; }
        [System.Text.Json.Serialization.JsonConverter(typeof(System.Text.Json.Serialization.JsonStringEnumConverter<MemoryPlacement>))]
        public MemoryPlacement Placement { get; set; }
        public long Generation { get; set; }
        public string? RoutingFile { get; set; }
        public ulong RoutingChecksum { get; set; }
        public List<DocEntry>? Documents { get; set; }
        /// <summary>XxHash64 of this manifest serialized with Checksum = 0.</summary>
        public ulong Checksum { get; set; }
    }

    private sealed class DocEntry
    {
        public string? Name { get; set; }
        public int Tokens { get; set; }
        public List<ChunkEntry>? Chunks { get; set; }
    }

    private sealed class ChunkEntry
    {
        public int Tokens { get; set; }
        public int[]? Slots { get; set; }
        /// <summary>XxHash64 per layer of the slot's K rows then V rows.</summary>
        public ulong[]? Sums { get; set; }
    }
}
