// Owns: the value model of the interpreter and Python's rules over it. Values are: null (None), Undefined, bool,
// long, double, string, JinjaList (list/tuple), JinjaDict (insertion-ordered str → value), JinjaNamespace,
// JinjaCallable (functions, bound methods, macros). Printing follows Python's str()/repr(); JSON follows Python's
// json.dumps as transformers' tojson calls it (ensure_ascii=False; separators ", " and ": ", or "," and ": " with an
// indent; floats as Python's repr). Truthiness, equality and ordering follow Python.
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Engine.Tokenizers.Jinja;

/// <summary>A missing variable, attribute or key. Prints as "", is falsy, iterates as empty.</summary>
public sealed class JinjaUndefined
{
    public JinjaUndefined(string name) { Name = name; }
    public string Name { get; }
    public override string ToString() => "";
}

public sealed class JinjaList : List<object?>
{
    public JinjaList() { }
    public JinjaList(IEnumerable<object?> items) : base(items) { }
    public bool IsTuple { get; init; }
}

public sealed class JinjaDict : OrderedDictionary<string, object?>
{
    public JinjaDict() : base(StringComparer.Ordinal) { }
}

/// <summary>namespace(...): the one mutable object templates may assign attributes on across loop scopes.</summary>
public sealed class JinjaNamespace
{
    public JinjaDict Attributes { get; } = new();
}

public delegate object? JinjaFunction(List<object?> args, List<(string Name, object? Value)> kwargs);

public sealed class JinjaCallable(string name, JinjaFunction function)
{
    public string Name { get; } = name;
    public JinjaFunction Function { get; } = function;
}

internal static class JinjaValues
{
    public static bool IsUndefined(object? v) => v is JinjaUndefined;

    public static bool Truthy(object? v) => v switch
    {
        null or JinjaUndefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        JinjaList l => l.Count > 0,
        JinjaDict d => d.Count > 0,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        JinjaUndefined => "undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        JinjaList l => l.IsTuple ? "tuple" : "list",
        JinjaDict => "dict",
        JinjaNamespace => "namespace",
        JinjaCallable => "function",
        _ => v.GetType().Name,
    };

    /// <summary>Python str(v) (Jinja prints undefined as "").</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        JinjaUndefined => "",
        _ => Repr(v),
    };

    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case null: sb.Append("None"); break;
            case JinjaUndefined: break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatRepr(d)); break;
            case string s:
            {
                char q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
                sb.Append(q);
                foreach (char c in s)
                    switch (c)
                    {
                        case '\\': sb.Append("\\\\"); break;
                        case '\n': sb.Append("\\n"); break;
                        case '\r': sb.Append("\\r"); break;
                        case '\t': sb.Append("\\t"); break;
                        default:
                            if (c == q) sb.Append('\\').Append(c);
                            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                            else sb.Append(c);
                            break;
                    }
                sb.Append(q);
                break;
            }
            case JinjaList list:
                sb.Append(list.IsTuple ? '(' : '[');
                for (int i = 0; i < list.Count; i++) { if (i > 0) sb.Append(", "); AppendRepr(sb, list[i]); }
                if (list.IsTuple && list.Count == 1) sb.Append(',');
                sb.Append(list.IsTuple ? ')' : ']');
                break;
            case JinjaDict dict:
            {
                sb.Append('{');
                bool first = true;
                foreach (var (k, val) in dict)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k); sb.Append(": "); AppendRepr(sb, val);
                }
                sb.Append('}');
                break;
            }
            case JinjaNamespace ns: sb.Append("<Namespace ").Append(Repr(ns.Attributes)).Append('>'); break;
            case JinjaCallable f: sb.Append("<function ").Append(f.Name).Append('>'); break;
            default: sb.Append(v); break;
        }
    }

    /// <summary>Python's repr of a float: shortest round-trip digits, ".0" on integral values, "e-05" exponents.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == Math.Floor(d) && Math.Abs(d) < 1e16) return d.ToString("F0", CultureInfo.InvariantCulture) + ".0";
        var r = d.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOf('E');
        if (e < 0) return r;
        var mant = r[..e];
        var exp = int.Parse(r.AsSpan(e + 1), CultureInfo.InvariantCulture);
        if (exp >= -4 && exp < 16) return d.ToString("0.#################", CultureInfo.InvariantCulture);
        return $"{mant}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):00}";
    }

    // ---- JSON (Python json.dumps) ----

    public static string ToJson(object? v, int? indent, bool sortKeys = false, string? itemSep = null, string? keySep = null)
    {
        var sb = new StringBuilder();
        AppendJson(sb, v, indent, 0, sortKeys, itemSep ?? (indent != null ? "," : ", "), keySep ?? ": ");
        return sb.ToString();
    }

    private static void AppendJson(StringBuilder sb, object? v, int? indent, int depth, bool sortKeys, string itemSep, string keySep)
    {
        switch (v)
        {
            case null or JinjaUndefined: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatRepr(d));
                break;
            case string s: AppendJsonString(sb, s); break;
            case JinjaList list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    NewLine(sb, indent, depth + 1);
                    AppendJson(sb, list[i], indent, depth + 1, sortKeys, itemSep, keySep);
                }
                NewLine(sb, indent, depth);
                sb.Append(']');
                break;
            case JinjaDict dict:
            {
                if (dict.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                IEnumerable<KeyValuePair<string, object?>> items = sortKeys ? dict.OrderBy(p => p.Key, StringComparer.Ordinal) : dict;
                bool first = true;
                foreach (var (k, val) in items)
                {
                    if (!first) sb.Append(itemSep);
                    first = false;
                    NewLine(sb, indent, depth + 1);
                    AppendJsonString(sb, k);
                    sb.Append(keySep);
                    AppendJson(sb, val, indent, depth + 1, sortKeys, itemSep, keySep);
                }
                NewLine(sb, indent, depth);
                sb.Append('}');
                break;
            }
            case JinjaNamespace ns: AppendJson(sb, ns.Attributes, indent, depth, sortKeys, itemSep, keySep); break;
            default: throw new InvalidOperationException($"Object of type {TypeName(v)} is not JSON serializable");
        }
    }

    private static void NewLine(StringBuilder sb, int? indent, int depth)
    {
        if (indent is int n) sb.Append('\n').Append(' ', n * depth);
    }

    private static void AppendJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        sb.Append('"');
    }

    /// <summary>A JSON document as interpreter values (objects keep their key order; integers stay integers).</summary>
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => ObjectFromJson(e),
        JsonValueKind.Array => new JinjaList(e.EnumerateArray().Select(FromJson)),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? (object)l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    private static JinjaDict ObjectFromJson(JsonElement e)
    {
        var d = new JinjaDict();
        foreach (var p in e.EnumerateObject()) d[p.Name] = FromJson(p.Value);
        return d;
    }

    // ---- equality and ordering (Python) ----

    public static bool Equal(object? a, object? b)
    {
        if (a is JinjaUndefined || b is JinjaUndefined) return a is JinjaUndefined && b is JinjaUndefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
            return a is long la && b is long lb ? la == lb : ToDouble(a) == ToDouble(b);
        if (a is string sa && b is string sb) return string.Equals(sa, sb, StringComparison.Ordinal);
        if (a is JinjaList x && b is JinjaList y)
        {
            if (x.Count != y.Count) return false;
            for (int i = 0; i < x.Count; i++) if (!Equal(x[i], y[i])) return false;
            return true;
        }
        if (a is JinjaDict dx && b is JinjaDict dy)
        {
            if (dx.Count != dy.Count) return false;
            foreach (var (k, v) in dx) if (!dy.TryGetValue(k, out var w) || !Equal(v, w)) return false;
            return true;
        }
        return ReferenceEquals(a, b);
    }

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException($"expected a number, got {TypeName(v)}"),
    };

    /// <summary>Python ordering (numbers with numbers, strings with strings, lists element-wise); else a TypeError.</summary>
    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is long la && b is long lb ? la.CompareTo(lb) : ToDouble(a).CompareTo(ToDouble(b));
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb);
        if (a is JinjaList x && b is JinjaList y)
        {
            for (int i = 0; i < Math.Min(x.Count, y.Count); i++)
            {
                if (Equal(x[i], y[i])) continue;
                return Compare(x[i], y[i]);
            }
            return x.Count.CompareTo(y.Count);
        }
        throw new InvalidOperationException($"'<' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>The items a for loop visits: list items, dict keys, string characters; undefined/None → error except undefined (empty).</summary>
    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        JinjaList l => l,
        JinjaDict d => d.Keys,
        string s => EnumerateChars(s),
        JinjaUndefined => [],
        _ => throw new InvalidOperationException($"'{TypeName(v)}' object is not iterable"),
    };

    private static IEnumerable<object?> EnumerateChars(string s)
    {
        // Python iterates code points; surrogate pairs stay together, combining marks do not.
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { yield return s.Substring(i, 2); i++; }
            else yield return s[i].ToString();
        }
    }

    public static long Length(object? v) => v switch
    {
        string s => s.Length,
        JinjaList l => l.Count,
        JinjaDict d => d.Count,
        JinjaUndefined => 0,
        _ => throw new InvalidOperationException($"object of type '{TypeName(v)}' has no len()"),
    };
}
