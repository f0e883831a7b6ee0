// Owns: adding documents to a persistent memory with a model loaded from its file (what `engine memory add` does),
// so a front end needs only paths and text: opens the model on the CPU backend, its tokenizer, and the memory
// (created when absent), then encodes, computes and commits documents.
// Invariants: nothing is written until Save; disposing an ingest whose memory it created and never saved deletes the
// memory again (a failed or cancelled first add leaves no trace).
namespace Engine.Runtime.Memory;

using Engine.Formats;
using Engine.Kernels;
using Engine.Model;

/// <summary>One document of a memory, as listed.</summary>
public sealed record MemoryDocumentSummary(string Name, int TokenCount, int ChunkCount);

/// <summary>A model + tokenizer + writable memory opened together to add documents.</summary>
public sealed class MemoryIngest : IDisposable
{
    private readonly ModelFile _file;
    private readonly IBackend _backend;
    private readonly ILanguageModel _model;
    private readonly ITextTokenizer _tokenizer;
    private readonly string _root;
    private bool _saved, _disposed;

    private MemoryIngest(ModelFile file, IBackend backend, ILanguageModel model, ITextTokenizer tokenizer, string root, MemoryStore store)
    {
        _file = file; _backend = backend; _model = model; _tokenizer = tokenizer; _root = root; Store = store;
    }

    /// <summary>The memory being written.</summary>
    public MemoryStore Store { get; }

    /// <summary>Opens <paramref name="modelPath"/> (CPU backend, <paramref name="threads"/>) and memory
    /// <paramref name="name"/> under <paramref name="root"/> for writing, creating it with <paramref name="chunkSize"/>
    /// when absent.</summary>
    public static MemoryIngest Open(string modelPath, int threads, string root, string name, int chunkSize, CancellationToken cancellationToken = default)
    {
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"model file not found: {modelPath}");
        var file = ModelFile.Open(modelPath);
        IBackend? backend = null;
        ILanguageModel? model = null;
        try
        {
            backend = Backends.Create("cpu", threads);
            model = ModelLoader.Load(file, backend);
            var tok = TokenizerAdapter.FromModelFile(file) ?? throw new InvalidOperationException($"{modelPath} has no tokenizer metadata");
            var store = MemoryStore.OpenOrCreate(root, name, MemoryStore.Identify(file, model.Config), model.Config, chunkSize, cancellationToken: cancellationToken);
            return new MemoryIngest(file, backend, model, tok, root, store);
        }
        catch
        {
            model?.Dispose(); backend?.Dispose(); file.Dispose();
            throw;
        }
    }

    /// <summary>Token ids of a document's text (with the model's BOS as its vocabulary asks).</summary>
    public int[] Encode(string text) => _tokenizer.Encode(text, addSpecial: true, parseSpecial: false);

    /// <summary>Computes the K/V of <paramref name="tokens"/> and adds it as <paramref name="document"/> (not yet saved).</summary>
    public void Add(string document, int[] tokens, IProgress<int>? progress = null, CancellationToken cancellationToken = default) =>
        Store.Add(_model, document, tokens, progress, cancellationToken: cancellationToken);

    /// <summary>Commits every document added so far (all files of this ingest, or none).</summary>
    public void Save()
    {
        Store.Save();
        _saved = true;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_saved && Store.Created) MemoryStore.DeleteCreated(Store, _root);
        else Store.Dispose();
        _model.Dispose(); _backend.Dispose(); _file.Dispose();
    }
}
