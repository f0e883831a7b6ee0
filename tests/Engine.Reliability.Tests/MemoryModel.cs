// Owns: the model side of the memory tests — the bundled stories260K loaded once per fixture, documents to ingest, and
// a snapshot of a memory's content (document list, every chunk's K/V rows and routing keys) that two memories can be
// compared by, whatever slots they were stored in.
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Documents;
using Engine.Model;
using Engine.Runtime;
using Engine.Runtime.Memory;

namespace Engine.Reliability.Tests;

internal sealed class MemoryModel : IDisposable
{
    public static readonly string[] Texts =
    [
        "Once upon a time, there was a little dog named Max. Max loved to dig in the garden.",
        "Lily had a blue kite. Every morning she went to the hill with her dad to fly it.",
        "Tom was a small boy who did not like to eat carrots. His mom made a big soup.",
        "The old owl lived in a hole in the oak tree. At night she flew over the forest.",
        "Sam and Sue went to the park. They saw a big red ball and played all day long.",
        "A little fish swam in the sea. It was blue and shiny and it liked to sing.",
    ];

    public readonly ModelFile File;
    public readonly CpuBackend Backend = new(1);
    public readonly TransformerModel Model;
    public readonly ITextTokenizer Tokenizer;
    public readonly MemoryIdentity Identity;

    public MemoryModel()
    {
        File = ModelFile.Open(Cli.DefaultModel);
        Model = ModelLoader.Load(File, Backend);
        Tokenizer = TokenizerAdapter.FromModelFile(File) ?? throw new InvalidOperationException("no tokenizer");
        Identity = MemoryStore.Identify(File, Model.Config);
    }

    public int[] Encode(string text) => Tokenizer.Encode(text, addSpecial: true, parseSpecial: false);

    /// <summary>Adds documents (name, text index) to memory <paramref name="name"/> under <paramref name="root"/> and saves.</summary>
    public void Add(string root, string name, int chunkSize, params int[] texts)
    {
        using var m = MemoryStore.OpenOrCreate(root, name, Identity, Model.Config, chunkSize);
        foreach (int t in texts) m.Add(Model, $"doc{t}", Encode(Texts[t]));
        m.Save();
    }

    public void Dispose() { Model.Dispose(); Backend.Dispose(); File.Dispose(); }

    /// <summary>Per document (by name, sorted): tokens, and per chunk and layer the used K and V rows and the routing key.</summary>
    public static unsafe SortedDictionary<string, byte[]> Snapshot(PersistentMemory m)
    {
        var result = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        int chunk = 0;
        foreach (var d in m.Documents)
        {
            using var ms = new MemoryStream();
            ms.Write(BitConverter.GetBytes(d.TokenCount));
            for (int c = 0; c < d.ChunkCount; c++, chunk++)
                for (int l = 0; l < m.LayerCount; l++)
                {
                    var p = m.ChunkPage(chunk, l, 0);
                    int bytes = p.TokenCount * m.KvDim * 4;
                    ms.Write(new ReadOnlySpan<byte>((void*)p.K, bytes));
                    ms.Write(new ReadOnlySpan<byte>((void*)p.V, bytes));
                    ms.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(m.RoutingKey(chunk, l)));
                }
            result[d.Name] = ms.ToArray();
        }
        return result;
    }
}
