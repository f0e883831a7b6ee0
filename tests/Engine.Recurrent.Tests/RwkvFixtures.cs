// Owns: loading the shared tiny RWKV models and their expected logits (rwkv.cpp tests/) for the recurrent tests.
using Engine.Formats;
using Engine.Kernels;
using Engine.Model;

namespace Engine.Recurrent.Tests;

internal static class RwkvFixtures
{
    /// <summary>Bytes of `"in`: the prompt rwkv.cpp's tests feed from the initial state.</summary>
    public static readonly int[] Prompt = [34, 105, 110];

    public static readonly string[] Files =
    [
        "tiny-rwkv-5v2-730K-FP32.bin", "tiny-rwkv-6v0-3m-Q5_0.bin", "tiny-rwkv-6v0-3m-Q5_1.bin", "tiny-rwkv-7v0-834K-FP32.bin",
    ];

    public static string ExpectedFor(string file) => file switch
    {
        var f when f.Contains("5v2") => "expected-logits-5v2-730K.bin",
        var f when f.Contains("6v0") => "expected-logits-6v0-3m.bin",
        _ => "expected-logits-7v0-834K.bin",
    };

    public static float[] Expected(string file)
    {
        var bytes = File.ReadAllBytes(SharedData.Get("models/rwkv/" + ExpectedFor(file)));
        Assert.That(bytes, Has.Length.EqualTo(256 * 4));
        var f = new float[256];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return f;
    }

    public static IBackend Backend(string name) => name == "cpu" ? new CpuBackend(2) : new ReferenceBackend();

    public static RwkvModel Load(string file, IBackend backend) =>
        RwkvModel.Load(ModelFiles.Open(SharedData.Get("models/rwkv/" + file)), backend, ownsFile: true);
}
