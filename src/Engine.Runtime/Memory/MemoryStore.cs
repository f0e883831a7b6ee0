// Owns: the API over named persistent memories — where they live (root folder: ENGINE_MEMORY_DIR or
// ~/.cache/engine/memories), the model identity a memory is tied to, document ingestion (each document's K/V computed
// by a forward pass of its own, positions restarting at 0 = document-wise RoPE; documents longer than the model's
// context are cut into context-sized segments, each restarting at 0; with MemoryPlacement.BeforePrompt, the default,
// the stored keys are then re-rotated to sit at −n .. −1, before the prompt), and the store decorator a generation uses.
// Invariants: a memory is only opened for a model whose identity (architecture, shape, SHA-256 of the tensor table and
// of each tensor's first 4 KiB) matches its header; Add leaves the memory unchanged when it fails; a writer holds the
// memory's exclusive lock from open to Dispose (a second writer waits, see MemoryLock), a reader a shared one.
using System.Security.Cryptography;
using System.Text;
using Engine.Formats;
using Engine.Memory;
using Engine.Memory.Documents;
using Engine.Model;

namespace Engine.Runtime.Memory;

/// <summary>A named persistent memory of documents for one model.</summary>
public sealed class MemoryStore : IDisposable
{
    private MemoryStore(string name, PersistentMemory memory, bool created = false) { Name = name; Memory = memory; Created = created; }

    public string Name { get; }
    /// <summary>True when OpenOrCreate created the memory (the caller may delete it again if its first Add fails).</summary>
    public bool Created { get; }
    public PersistentMemory Memory { get; }

    /// <summary>Default root: $ENGINE_MEMORY_DIR, else ~/.cache/engine/memories.</summary>
    public static string DefaultRoot =>
        Environment.GetEnvironmentVariable("ENGINE_MEMORY_DIR") is { Length: > 0 } d ? d
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "engine", "memories");

    /// <summary>Names of the memories under <paramref name="root"/>.</summary>
    public static IReadOnlyList<string> Names(string root) =>
        Directory.Exists(root)
            ? Directory.GetDirectories(root).Where(d => File.Exists(Path.Combine(d, "header.json"))).Select(Path.GetFileName).OfType<string>().Order().ToList()
            : [];

    public static string FolderOf(string root, string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name is "." or "..")
            throw new ArgumentException($"invalid memory name '{name}'");
        return Path.Combine(root, name);
    }

    /// <summary>The identity of a model: configuration + SHA-256 over the tensor table and each tensor's first 4 KiB.</summary>
    public static MemoryIdentity Identify(ModelFile file, ModelConfig config)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var t in file.Tensors)
        {
            sha.AppendData(Encoding.UTF8.GetBytes($"{t.Name}|{t.Type}|{string.Join(",", t.Shape)}|{t.ByteLength};"));
            sha.AppendData(t.Bytes[..(int)Math.Min(4096, t.ByteLength)]);
        }
        return new MemoryIdentity(config.Architecture, config.LayerCount, config.EmbeddingLength, config.HeadCount, config.KvHeadCount,
            config.HeadDim, config.VocabSize, Convert.ToHexStringLower(sha.GetHashAndReset()));
    }

    /// <summary>Opens memory <paramref name="name"/> under <paramref name="root"/> for writing, creating it when absent
    /// (decided under the memory's write lock; waits up to <paramref name="lockTimeout"/> for another writer).</summary>
    public static MemoryStore OpenOrCreate(string root, string name, MemoryIdentity identity, ModelConfig config, int chunkSize = 32,
        MemoryPlacement placement = MemoryPlacement.BeforePrompt, TimeSpan? lockTimeout = null, CancellationToken cancellationToken = default)
    {
        var folder = FolderOf(root, name);
        var m = PersistentMemory.OpenOrCreate(folder, identity, config.LayerCount, config.KvDim, chunkSize, placement, out bool created, lockTimeout, cancellationToken);
        return new MemoryStore(name, m, created);
    }

    /// <summary>Opens an existing memory, for writing (exclusive lock) unless <paramref name="writable"/> is false (shared
    /// lock: what a generation needs); <paramref name="expected"/> null skips the model check (listing, removing).</summary>
    /// <summary>Opens memory <paramref name="name"/> whatever model it belongs to (listing, removing documents).</summary>
    public static MemoryStore OpenUnchecked(string root, string name, bool writable = true) => Open(root, name, expected: null, writable);

    public static MemoryStore Open(string root, string name, MemoryIdentity? expected, bool writable = true, TimeSpan? lockTimeout = null)
    {
        var folder = FolderOf(root, name);
        if (!File.Exists(Path.Combine(folder, "header.json")))
            throw new MemoryFormatException(folder, $"no memory named {Engine.Tensors.ErrorText.Quote(name)} under {root}");
        return new MemoryStore(name, PersistentMemory.Open(folder, expected, writable, lockTimeout));
    }

    /// <summary>Deletes a whole memory folder (under its write lock); false when absent.</summary>
    public static bool Delete(string root, string name, TimeSpan? lockTimeout = null)
    {
        var folder = FolderOf(root, name);
        if (!File.Exists(Path.Combine(folder, "header.json"))) return false;
        using (MemoryLock.Acquire(folder, exclusive: true, lockTimeout))
        {
            if (!File.Exists(Path.Combine(folder, "header.json"))) return false;
            File.Delete(Path.Combine(folder, "header.json"));   // first: from here on the folder is no memory
            foreach (var f in Directory.GetFiles(folder)) if (Path.GetFileName(f) != "lock") File.Delete(f);
        }
        try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        return true;
    }

    /// <summary>Deletes a memory this process created and holds (its first Add failed or was cancelled): no partial
    /// memory is left behind.</summary>
    public static void DeleteCreated(MemoryStore store, string root)
    {
        if (!store.Created) throw new InvalidOperationException("only a memory this store created can be deleted this way");
        var folder = FolderOf(root, store.Name);
        store.Dispose();
        try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    public IReadOnlyList<MemoryDocumentInfo> List() => Memory.Documents;

    /// <summary>The memory's documents as Runtime records (name, tokens, routed chunks) for front ends.</summary>
    public IReadOnlyList<MemoryDocumentSummary> Documents => Memory.Documents.Select(d => new MemoryDocumentSummary(d.Name, d.TokenCount, d.ChunkCount)).ToList();

    /// <summary>The model identity the memory is tied to, as text (architecture, shape, hash).</summary>
    public string IdentityText => Memory.Identity.ToString();

    /// <summary>Tokens per routed chunk.</summary>
    public int ChunkSize => Memory.ChunkSize;

    /// <summary>Bytes the memory holds on disk.</summary>
    public long DiskBytes => Memory.DiskBytes;

    /// <summary>Documents whose files failed their check when the memory was opened (remove and add them again).</summary>
    public IReadOnlyList<string> CorruptDocuments => Memory.CorruptDocuments;

    /// <summary>Where to report "waiting for memory X: another process holds it" lines while a lock is awaited
    /// (process-wide, as the lock files are; null = silent).</summary>
    public static void OnLockWait(Action<string>? report) => MemoryLock.OnWait = report;

    public bool Remove(string document) => Memory.Remove(document);

    public void Save() => Memory.Save();

    /// <summary>
    /// Computes the K/V of <paramref name="tokens"/> with <paramref name="model"/> (positions from 0, segments of at most
    /// the model's context) and adds them as document <paramref name="document"/>. progress receives tokens done.
    /// </summary>
    public void Add(ILanguageModel model, string document, ReadOnlySpan<int> tokens, IProgress<int>? progress = null, int prefillChunk = 256,
        CancellationToken cancellationToken = default)
    {
        if (tokens.Length == 0) throw new ArgumentException($"document '{document}' has no tokens");
        var c = model.Config;
        if (c.LayerCount != Memory.LayerCount || c.KvDim != Memory.KvDim)
            throw new ArgumentException($"model shape [{c.LayerCount}, {c.KvDim}] differs from the memory's [{Memory.LayerCount}, {Memory.KvDim}]");
        if (Memory.Documents.Any(d => d.Name == document))
            throw new ArgumentException($"memory {Engine.Tensors.ErrorText.Quote(Name)} already holds a document named {Engine.Tensors.ErrorText.Quote(document)}");
        int segment = Math.Max(1, c.ContextLength);
        var logits = new float[c.VocabSize];
        int done = 0;
        try
        {
            for (int s0 = 0; s0 < tokens.Length; s0 += segment)
            {
                int len = Math.Min(segment, tokens.Length - s0);
                using var kv = model.CreateKvStore(len);
                for (int p = 0; p < len; p += prefillChunk)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int n = Math.Min(prefillChunk, len - p);
                    model.Forward(ForwardBatch.ForSequence(tokens.Slice(s0 + p, n), p), kv, logits, allLogits: false);
                    done += n;
                    progress?.Report(done);
                }
                var store = kv;
                Memory.Add(document, len, l => store.Pages(l, 0).ToArray(), append: s0 > 0, RotateKeys(model));
            }
        }
        catch
        {
            Memory.Remove(document);
            throw;
        }
    }

    /// <summary>Rotates key rows [tokens, kvDim] in place by a RoPE position shift (placement BeforePrompt); null for
    /// models without RoPE parameters here (only transformers have them).</summary>
    private static Action<int, Span<float>, int>? RotateKeys(ILanguageModel model)
    {
        if (model is not TransformerModel tm) return null;
        var c = tm.Config;
        var rope = new Engine.Kernels.RopeParams(c.RopeStyle, c.RopeDimensions, c.RopeFreqBase, c.RopeFreqScale, tm.Weights.RopeFreqFactors);
        return (layer, rows, shift) =>
        {
            var positions = new int[rows.Length / c.KvDim];
            Array.Fill(positions, shift);
            tm.Backend.Rope(rows, c.KvHeadCount, c.HeadDim, positions, rope);
        };
    }

    /// <summary>A KV-store decorator presenting the routed top-k chunks of this memory (EngineOptions.KvStoreDecorator).</summary>
    public Func<IKvStore, IKvStore> Decorator(int topK) => inner => new MemoryKvStore(inner, Memory, topK);

    public void Dispose() => Memory.Dispose();
}
