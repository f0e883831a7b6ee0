// Owns: the one in-memory description every model file format produces: GGUF-style metadata + zero-copy tensor views.
// Invariants: metadata keys follow GGUF naming (general.architecture, llama.block_count, tokenizer.ggml.tokens, ...)
// whatever the source format; tensor names follow GGUF naming (token_embd.weight, blk.N.attn_q.weight, ...);
// tensor views point into the memory-mapped file and stay valid until Dispose.
// Metadata values are boxed: byte, sbyte, ushort, short, uint, int, ulong, long, float, double, bool, string,
// or arrays of those (byte[], int[], float[], string[], ..., object[] for arrays of arrays).
using Engine.Tensors;

namespace Engine.Formats;

public enum ModelFileFormat { Gguf, Llama2c, Safetensors, Rwkv }

/// <summary>A loaded model file: metadata + tensor views. Dispose unmaps the file.</summary>
public sealed class ModelFile : IDisposable
{
    private readonly Dictionary<string, TensorView> _byName;
    private readonly IDisposable? _owner;

    public ModelFile(string path, ModelFileFormat format, IReadOnlyDictionary<string, object> metadata,
        IReadOnlyList<TensorView> tensors, IDisposable? owner)
    {
        Path = path; Format = format; Metadata = metadata; Tensors = tensors; _owner = owner;
        _byName = new Dictionary<string, TensorView>(StringComparer.Ordinal);
        foreach (var t in tensors) _byName[t.Name] = t;
    }

    /// <summary>Opens any supported model or tokenizer file by content; same as <see cref="ModelFiles.Open"/>.</summary>
    public static ModelFile Open(string path, string? tokenizerPath = null) => ModelFiles.Open(path, tokenizerPath);

    public string Path { get; }
    public ModelFileFormat Format { get; }
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyList<TensorView> Tensors { get; }

    public string? Architecture => GetString("general.architecture");

    public bool TryGetTensor(string name, out TensorView view) => _byName.TryGetValue(name, out view);

    public TensorView GetTensor(string name) => _byName.TryGetValue(name, out var v)
        ? v : throw new ModelFormatException(Path, -1, $"required tensor '{name}' is missing");

    public string? GetString(string key) => Metadata.TryGetValue(key, out var v) ? v as string : null;

    /// <summary>Any integer-typed value as long; null if absent.</summary>
    public long? GetInteger(string key) => Metadata.TryGetValue(key, out var v) ? v switch
    {
        byte b => b, sbyte b => b, ushort s => s, short s => s, uint u => u, int i => i, long l => l,
        ulong u => u <= long.MaxValue ? (long)u : throw new ModelFormatException(Path, -1, $"metadata '{key}' = {u} is out of range"),
        bool b => b ? 1 : 0,
        _ => throw new ModelFormatException(Path, -1, $"metadata '{key}' is {v.GetType().Name}, expected an integer"),
    } : null;

    /// <summary>Any numeric value as double; null if absent.</summary>
    public double? GetNumber(string key) => Metadata.TryGetValue(key, out var v) ? v switch
    {
        float f => f, double d => d,
        _ => GetInteger(key),
    } : null;

    /// <summary>The array stored under <paramref name="key"/> if its element type is exactly T; null otherwise.
    /// (An exact type test: the CLR would let an int[] pass as uint[].)</summary>
    public T[]? GetArray<T>(string key) => Metadata.TryGetValue(key, out var v) && v.GetType() == typeof(T[]) ? (T[])v : null;

    public void Dispose() => _owner?.Dispose();
}

/// <summary>The one exception for bad model/tokenizer files: names the file, the byte offset (-1 if not applicable) and the problem.</summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string file, long offset, string problem, Exception? inner = null)
        : base(Engine.Tensors.ErrorText.Clean(offset >= 0 ? $"{file}: at offset {offset}: {problem}" : $"{file}: {problem}"), inner)
    {
        FilePath = file; Offset = offset; Problem = problem;
    }

    public string FilePath { get; }
    public long Offset { get; }
    public string Problem { get; }
}
