// Owns: a named persistent memory on disk — documents' K/V computed with document-wise RoPE (positions restart at 0
// per document segment), cut into chunks of ChunkSize tokens, each (chunk, layer) in one slot of the disk tier, plus
// one routing key per (chunk, layer): the mean of the chunk's keys, [kvDim] = per KV head means side by side (MSA's
// mean-pooled routing key). Folder layout: header.json (format, model identity, shape, documents → chunk slots),
// routing.bin (float32 [chunks, layers, kvDim] in document/chunk order), kv.N.bin (DiskKvFile segments).
// Invariants: Open checks the header against the files (sizes, slots) and the model identity before anything is
// used; Save writes routing.bin then header.json via a temp file + rename, so a crash leaves the previous state;
// every chunk's pages are F32 [tokens ≤ ChunkSize, kvDim]. Source: MSA (Memory Sparse Attention) document-wise RoPE.
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
    private const string Format = "engine-memory/1";
    private readonly List<Doc> _docs = new();
    private readonly DiskKvFile _disk;
    private readonly KvPageLayout _chunkLayout;

    private PersistentMemory(string folder, MemoryIdentity identity, int layerCount, int kvDim, int chunkSize, IEnumerable<int>? used,
        MemoryPlacement placement)
    {
        Folder = folder; Identity = identity; LayerCount = layerCount; KvDim = kvDim; ChunkSize = chunkSize; Placement = placement;
        _chunkLayout = KvPageLayout.Of(KvElementType.F32, chunkSize, kvDim);
        _disk = new DiskKvFile(Path.Combine(folder, "kv"), _chunkLayout.TotalBytes, 0, used);
    }

    public string Folder { get; }
    public MemoryIdentity Identity { get; }
    public int LayerCount { get; }
    public int KvDim { get; }
    public int ChunkSize { get; }
    public MemoryPlacement Placement { get; }
    /// <summary>Incremented by every Add and Remove (lets readers cache per-chunk data).</summary>
    public int Version { get; private set; }
    public long DiskBytes => _disk.UsedBytes;

    public IReadOnlyList<MemoryDocumentInfo> Documents => _docs.Select(d => new MemoryDocumentInfo(d.Name, d.Tokens, d.Chunks.Count)).ToList();

    /// <summary>All chunks in document order (index = chunk id used by routing).</summary>
    public int ChunkCount => _docs.Sum(d => d.Chunks.Count);

    /// <summary>Creates an empty memory in <paramref name="folder"/> (which must not hold one).</summary>
    public static PersistentMemory Create(string folder, MemoryIdentity identity, int layerCount, int kvDim, int chunkSize = 32,
        MemoryPlacement placement = MemoryPlacement.BeforePrompt)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        if (File.Exists(Path.Combine(folder, "header.json"))) throw new IOException($"{folder} already holds a memory");
        Directory.CreateDirectory(folder);
        var m = new PersistentMemory(folder, identity, layerCount, kvDim, chunkSize, null, placement);
        m.Save();
        return m;
    }

    /// <summary>Opens a saved memory; with <paramref name="expected"/>, throws MemoryFormatException unless the model identity matches.</summary>
    public static PersistentMemory Open(string folder, MemoryIdentity? expected = null)
    {
        string headerPath = Path.Combine(folder, "header.json");
        if (!File.Exists(headerPath)) throw new MemoryFormatException(folder, "no memory here (header.json missing)");
        Header h;
        try { h = JsonSerializer.Deserialize<Header>(File.ReadAllText(headerPath)) ?? throw new JsonException("null header"); }
        catch (JsonException e) { throw new MemoryFormatException(headerPath, $"corrupt header: {e.Message}"); }
        if (h.Format != Format) throw new MemoryFormatException(headerPath, $"format '{h.Format}' is not {Format}");
        if (h.Identity == null || h.Documents == null || h.LayerCount < 1 || h.KvDim < 1 || h.ChunkSize < 1)
            throw new MemoryFormatException(headerPath, "corrupt header: missing identity, documents or shape");
        if (expected != null && h.Identity != expected)
            throw new MemoryFormatException(folder, $"memory was built with model {h.Identity}, not with this model {expected}");
        int chunks = h.Documents.Sum(d => d.Chunks?.Count ?? 0);
        var used = new List<int>();
        foreach (var d in h.Documents)
        {
            if (d.Name == null || d.Chunks == null) throw new MemoryFormatException(headerPath, "corrupt header: document without name or chunks");
            foreach (var c in d.Chunks)
            {
                if (c.Slots == null || c.Slots.Length != h.LayerCount || c.Tokens < 1 || c.Tokens > h.ChunkSize)
                    throw new MemoryFormatException(headerPath, $"corrupt header: bad chunk in document '{d.Name}'");
                used.AddRange(c.Slots);
            }
        }
        string routingPath = Path.Combine(folder, "routing.bin");
        long routingBytes = (long)chunks * h.LayerCount * h.KvDim * 4;
        if (!File.Exists(routingPath) || new FileInfo(routingPath).Length != routingBytes)
            throw new MemoryFormatException(routingPath, $"routing keys missing or of the wrong size (expected {routingBytes} bytes)");
        PersistentMemory m;
        try { m = new PersistentMemory(folder, h.Identity, h.LayerCount, h.KvDim, h.ChunkSize, used, h.Placement); }
        catch (InvalidDataException e) { throw new MemoryFormatException(folder, e.Message); }
        var keys = File.ReadAllBytes(routingPath);
        var all = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(keys);
        int at = 0, per = h.LayerCount * h.KvDim;
        foreach (var d in h.Documents)
        {
            var doc = new Doc(d.Name!) { Tokens = d.Tokens };
            foreach (var c in d.Chunks!) { doc.Chunks.Add(new Chunk(c.Tokens, c.Slots!, all.Slice(at * per, per).ToArray())); at++; }
            m._docs.Add(doc);
        }
        return m;
    }

    /// <summary>
    /// Adds (or, with <paramref name="append"/>, extends) document <paramref name="name"/> with one segment of
    /// <paramref name="tokenCount"/> tokens whose K/V were computed at positions 0 .. tokenCount-1. pagesOfLayer(l)
    /// returns the F32 pages covering those positions in layer l. With placement BeforePrompt, rotateKeys(layer, rows,
    /// shift) must rotate the stored key rows [tokens, kvDim] in place by RoPE position shift (= −tokenCount).
    /// </summary>
    public void Add(string name, int tokenCount, Func<int, KvPage[]> pagesOfLayer, bool append = false,
        Action<int, Span<float>, int>? rotateKeys = null)
    {
        if (Placement == MemoryPlacement.BeforePrompt && rotateKeys == null)
            throw new ArgumentException("this memory places documents before the prompt: Add needs a key rotation (RoPE) callback");
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        var doc = _docs.FirstOrDefault(d => d.Name == name);
        if (doc != null && !append) throw new ArgumentException($"memory already holds a document named '{name}' (remove it first)");
        if (doc == null) { doc = new Doc(name); _docs.Add(doc); }
        int chunkCount = (tokenCount + ChunkSize - 1) / ChunkSize;
        var added = new List<Chunk>();
        try
        {
            for (int c = 0; c < chunkCount; c++)
                added.Add(new Chunk(Math.Min(ChunkSize, tokenCount - c * ChunkSize), new int[LayerCount], new float[LayerCount * KvDim]));
            var row = new float[KvDim];
            for (int l = 0; l < LayerCount; l++)
            {
                var pages = pagesOfLayer(l);
                foreach (var ch in added) ch.Slots[l] = -1;
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
                }
            }
        }
        catch
        {
            foreach (var ch in added) foreach (int s in ch.Slots) if (s >= 0) _disk.Free(s);
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

    /// <summary>Removes a document and frees its slots; false when there is none of that name.</summary>
    public bool Remove(string name)
    {
        var doc = _docs.FirstOrDefault(d => d.Name == name);
        if (doc == null) return false;
        foreach (var c in doc.Chunks) foreach (int s in c.Slots) _disk.Free(s);
        _docs.Remove(doc);
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

    /// <summary>Flushes the slots and writes routing.bin and header.json (atomically replaced).</summary>
    public void Save()
    {
        _disk.Flush();
        var keys = new float[(long)ChunkCount * LayerCount * KvDim];
        int at = 0;
        foreach (var d in _docs) foreach (var c in d.Chunks) { c.RoutingKeys.CopyTo(keys, at); at += c.RoutingKeys.Length; }
        WriteAtomic(Path.Combine(Folder, "routing.bin"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(keys.AsSpan()).ToArray());
        var h = new Header
        {
            Format = Format, Identity = Identity, LayerCount = LayerCount, KvDim = KvDim, ChunkSize = ChunkSize, Placement = Placement,
            Documents = _docs.Select(d => new DocEntry { Name = d.Name, Tokens = d.Tokens,
                Chunks = d.Chunks.Select(c => new ChunkEntry { Tokens = c.Tokens, Slots = c.Slots }).ToList() }).ToList(),
        };
        WriteAtomic(Path.Combine(Folder, "header.json"), JsonSerializer.SerializeToUtf8Bytes(h, new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void WriteAtomic(string path, byte[] bytes)
    {
        string tmp = path + ".tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, path, overwrite: true);
    }

    public void Dispose() => _disk.Dispose();

    private sealed class Doc(string name)
    {
        public string Name { get; } = name;
        public int Tokens;
        public readonly List<Chunk> Chunks = new();
    }

    private sealed record Chunk(int Tokens, int[] Slots, float[] RoutingKeys);   // Slots [layer]; RoutingKeys [layer, kvDim]

    private sealed class Header
    {
        public string? Format { get; set; }
        public MemoryIdentity? Identity { get; set; }
        public int LayerCount { get; set; }
        public int KvDim { get; set; }
        public int ChunkSize { get; set; }
        [System.Text.Json.Serialization.JsonConverter(typeof(System.Text.Json.Serialization.JsonStringEnumConverter<MemoryPlacement>))]
        public MemoryPlacement Placement { get; set; }
        public List<DocEntry>? Documents { get; set; }
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
    }
}
