// Owns: small helpers shared by the format tests (metadata equality, byte comparison).
using System.Collections;
using Engine.Formats;

namespace Engine.Formats.Tests;

internal static class TestUtil
{
    /// <summary>Deep equality of boxed metadata values (same .NET type, same elements; floats compared bitwise).</summary>
    public static bool ValueEquals(object a, object b)
    {
        if (a.GetType() != b.GetType()) return false;
        if (a is float fa) return BitConverter.SingleToInt32Bits(fa) == BitConverter.SingleToInt32Bits((float)b);
        if (a is double da) return BitConverter.DoubleToInt64Bits(da) == BitConverter.DoubleToInt64Bits((double)b);
        if (a is Array xa)
        {
            var xb = (Array)b;
            if (xa.Length != xb.Length) return false;
            for (int i = 0; i < xa.Length; i++)
                if (!ValueEquals(xa.GetValue(i)!, xb.GetValue(i)!)) return false;
            return true;
        }
        return a.Equals(b);
    }

    /// <summary>Keys of <paramref name="expected"/> (optionally filtered) whose values differ or are absent in <paramref name="actual"/>.</summary>
    public static List<string> MetadataDifferences(IReadOnlyDictionary<string, object> expected,
        IReadOnlyDictionary<string, object> actual, Func<string, bool>? keyFilter = null)
    {
        var diff = new List<string>();
        foreach (var (k, v) in expected)
        {
            if (keyFilter != null && !keyFilter(k)) continue;
            if (!actual.TryGetValue(k, out var w)) diff.Add($"{k}: missing");
            else if (!ValueEquals(v, w)) diff.Add($"{k}: expected {Show(v)}, got {Show(w)}");
        }
        return diff;
    }

    private static string Show(object v) => v is IEnumerable e and not string
        ? $"{v.GetType().Name}[{e.Cast<object>().Count()}]" : $"{v.GetType().Name} {v}";
}
