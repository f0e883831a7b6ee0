// Owns: seeded random test data shared by every test project (one copy instead of a private Rand per test file).
// Invariants: the same (n, seed, scale) always gives the same floats: uniform in [-scale, scale) from System.Random(seed).
namespace Engine.Tests.Common;

public static class TestData
{
    /// <summary>n floats uniform in [-scale, scale) from System.Random(seed).</summary>
    public static float[] RandomFloats(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1) * scale).ToArray();
    }
}
