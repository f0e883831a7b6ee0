// Owns: Jinja2's built-in filters and tests as chat templates use them, with transformers' tojson override
// (json.dumps with ensure_ascii=False, indent, separators, sort_keys). Filters: trim, tojson, length/count, upper,
// lower, title, capitalize, replace, join, default/d, first, last, list, map, select, reject, selectattr, rejectattr,
// items, dictsort, string, int, float, safe, indent, unique, round, abs, reverse, sort, min, max, sum, wordcount,
// center. Tests: defined, undefined, none, boolean, true, false, string, number, integer, float, mapping, iterable,
// sequence, callable, odd, even, divisibleby, eq/equalto/==, ne/!=, lt/<, le/<=, gt/>, ge/>=, in, lower, upper, sameas.
// An unknown filter or test is a JinjaException naming it.
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Engine.Tokenizers.Jinja;

internal sealed partial class JinjaEvaluator
{
    private static object? Arg(List<object?> a, List<(string, object?)> k, int i, string n, object? d = null) => JinjaMethods.Arg(a, k, i, n, d);

    private object? ApplyFilter(string name, object? v, List<object?> a, List<(string Name, object? Value)> k, Node at)
    {
        switch (name)
        {
            case "trim":
                return Arg(a, k, 0, "chars") is string chars ? Str(v).Trim(chars.ToCharArray()) : Str(v).Trim();
            case "tojson":
            {
                int? indent = Arg(a, k, 0, "indent") switch { long n => (int)n, null or JinjaUndefined => null, var x => throw new InvalidOperationException($"tojson indent must be an integer, not {JinjaValues.TypeName(x)}") };
                string? itemSep = null, keySep = null;
                if (Arg(a, k, 99, "separators") is JinjaList { Count: 2 } seps) { itemSep = seps[0] as string; keySep = seps[1] as string; }
                return JinjaValues.ToJson(v, indent, JinjaValues.Truthy(Arg(a, k, 99, "sort_keys", false)), itemSep, keySep);
            }
            case "length" or "count": return JinjaValues.Length(v);
            case "upper": return Str(v).ToUpperInvariant();
            case "lower": return Str(v).ToLowerInvariant();
            case "title": return TitleFilter(Str(v));
            case "capitalize": return JinjaMethods.Capitalize(Str(v));
            case "replace":
                return JinjaMethods.StringMethod(Str(v), "replace")!.Function(a, k);
            case "join":
            {
                var sep = Arg(a, k, 0, "d", "") as string ?? "";
                var attr = Arg(a, k, 1, "attribute") as string;
                return string.Join(sep, Items(v).Select(x => Str(attr != null ? GetAttrPath(x, attr) : x)));
            }
            case "default" or "d":
            {
                var dflt = Arg(a, k, 0, "default_value", "");
                bool boolean = JinjaValues.Truthy(Arg(a, k, 1, "boolean", false));
                return v is JinjaUndefined || (boolean && !JinjaValues.Truthy(v)) ? dflt : v;
            }
            case "first": { var l = Items(v); return l.Count > 0 ? l[0] : new JinjaUndefined("first"); }
            case "last": { var l = Items(v); return l.Count > 0 ? l[^1] : new JinjaUndefined("last"); }
            case "list": return new JinjaList(Items(v));
            case "reverse": return v is string rs ? new string(rs.Reverse().ToArray()) : new JinjaList(Items(v).AsEnumerable().Reverse());
            case "map":
            {
                if (Arg(a, k, 99, "attribute") is string attr)
                {
                    var dflt = Arg(a, k, 99, "default", null);
                    return new JinjaList(Items(v).Select(x => GetAttrPath(x, attr) is JinjaUndefined && k.Any(p => p.Name == "default") ? dflt : GetAttrPath(x, attr)));
                }
                if (a.Count == 0 || a[0] is not string filter) throw new InvalidOperationException("map needs a filter name or attribute=");
                var rest = a.Skip(1).ToList();
                return new JinjaList(Items(v).Select(x => ApplyFilter(filter, x, rest, k, at)));
            }
            case "select" or "reject":
                return new JinjaList(Items(v).Where(x => SelectTest(x, a, 0, at) == (name == "select")));
            case "selectattr" or "rejectattr":
            {
                if (a.Count == 0 || a[0] is not string attr) throw new InvalidOperationException($"{name} needs an attribute name");
                return new JinjaList(Items(v).Where(x => SelectTest(GetAttrPath(x, attr), a, 1, at) == (name == "selectattr")));
            }
            case "items":
                return v switch
                {
                    JinjaDict d => new JinjaList(d.Select(p => (object?)new JinjaList { p.Key, p.Value }.AsTuple())),
                    JinjaUndefined => new JinjaList(),
                    _ => throw new InvalidOperationException($"items filter needs a mapping, got {JinjaValues.TypeName(v)}"),
                };
            case "dictsort":
                if (v is not JinjaDict dd) throw new InvalidOperationException($"dictsort needs a mapping, got {JinjaValues.TypeName(v)}");
                return new JinjaList(dd.OrderBy(p => p.Key, StringComparer.OrdinalIgnoreCase).Select(p => (object?)new JinjaList { p.Key, p.Value }.AsTuple()));
            case "string": return Str(v);
            case "safe": return v;
            case "int":
            {
                var dflt = Arg(a, k, 0, "default", 0L);
                return v switch
                {
                    long l => l,
                    bool b => b ? 1L : 0L,
                    double d => (long)Math.Truncate(d),
                    string si when long.TryParse(si.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l) => l,
                    string sd when double.TryParse(sd.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => (long)Math.Truncate(d),
                    _ => dflt,
                };
            }
            case "float":
                return v switch
                {
                    long or double or bool => JinjaValues.ToDouble(v),
                    string sf when double.TryParse(sf.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
                    _ => Arg(a, k, 0, "default", 0.0),
                };
            case "abs": return v switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), _ => throw new InvalidOperationException($"bad operand type for abs(): '{JinjaValues.TypeName(v)}'") };
            case "round":
            {
                int precision = (int)JinjaMethods.ToLong(Arg(a, k, 0, "precision", 0L));
                var method = Arg(a, k, 1, "method", "common") as string;
                double x = JinjaValues.ToDouble(v), f = Math.Pow(10, precision);
                return method switch
                {
                    "common" => precision is >= 0 and <= 15 ? Math.Round(x, precision, MidpointRounding.ToEven) : Math.Round(x * f, MidpointRounding.ToEven) / f,  // Python's round(): half to even
                    "floor" => Math.Floor(x * f) / f,
                    "ceil" => Math.Ceiling(x * f) / f,
                    _ => throw new InvalidOperationException("round method must be 'common', 'ceil' or 'floor'"),
                };
            }
            case "indent":
            {
                var width = Arg(a, k, 0, "width", 4L) switch { long n => new string(' ', (int)n), string ws => ws, var x => throw new InvalidOperationException($"indent width must be an int or str, not {JinjaValues.TypeName(x)}") };
                bool first = JinjaValues.Truthy(Arg(a, k, 1, "first", false)), blank = JinjaValues.Truthy(Arg(a, k, 2, "blank", false));
                var text = Str(v);
                var lines = text.Split('\n');
                var sb = new StringBuilder();
                for (int i = 0; i < lines.Length; i++)
                {
                    if (i > 0) sb.Append('\n');
                    bool indentThis = i == 0 ? first : blank || lines[i].Trim().Length > 0;
                    if (indentThis) sb.Append(width);
                    sb.Append(lines[i]);
                }
                return sb.ToString();
            }
            case "unique":
            {
                var result = new JinjaList();
                foreach (var x in Items(v)) if (!result.Any(y => JinjaValues.Equal(x, y))) result.Add(x);
                return result;
            }
            case "sort":
            {
                bool reverse = JinjaValues.Truthy(Arg(a, k, 0, "reverse", false));
                var attr = Arg(a, k, 2, "attribute") as string;
                var list = Items(v).ToList();
                var keyed = list.Select(x => attr != null ? GetAttrPath(x, attr) : x).ToList();
                var order = Enumerable.Range(0, list.Count).ToList();
                order.Sort((i, j) => { int c = JinjaValues.Compare(keyed[i], keyed[j]); return c != 0 ? c : i.CompareTo(j); });
                if (reverse) order.Reverse();
                return new JinjaList(order.Select(i => list[i]));
            }
            case "min" or "max":
            {
                var list = Items(v);
                if (list.Count == 0) return new JinjaUndefined(name);
                var best = list[0];
                foreach (var x in list.Skip(1)) if (JinjaValues.Compare(x, best) * (name == "min" ? -1 : 1) > 0) best = x;
                return best;
            }
            case "sum":
            {
                object? total = Arg(a, k, 1, "start", 0L);
                var attr = Arg(a, k, 0, "attribute") as string;
                foreach (var x in Items(v)) total = JinjaOperators.Binary("+", total, attr != null ? GetAttrPath(x, attr) : x);
                return total;
            }
            case "wordcount": return (long)Str(v).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            case "center":
            {
                var cs = Str(v);
                int width = (int)JinjaMethods.ToLong(Arg(a, k, 0, "width", 80L));
                if (cs.Length >= width) return cs;
                int left = (width - cs.Length) / 2 + ((width - cs.Length) % 2 & width % 2);
                return new string(' ', left) + cs + new string(' ', width - cs.Length - left);
            }
            default:
                throw new JinjaException($"unknown filter '{name}'", at.Line, at.Column);
        }
    }

    private static string Str(object? v) => JinjaValues.Str(v);

    private static List<object?> Items(object? v) => v is null
        ? throw new InvalidOperationException("'NoneType' object is not iterable")
        : JinjaValues.Iterate(v).ToList();

    /// <summary>map/selectattr's attribute= path: "a.b" follows keys; numeric parts index lists.</summary>
    private object? GetAttrPath(object? v, string path)
    {
        foreach (var part in path.Split('.'))
            v = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && v is JinjaList ? GetItem(v, i) : GetItem(v, part);
        return v;
    }

    private bool SelectTest(object? value, List<object?> a, int testIndex, Node at)
    {
        if (a.Count <= testIndex) return JinjaValues.Truthy(value);
        if (a[testIndex] is not string test) throw new InvalidOperationException("the test name must be a string");
        return ApplyTest(test, value, a.Skip(testIndex + 1).ToList(), at);
    }

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginning();

    /// <summary>Jinja2's title filter: each word (split on whitespace, '-', and opening brackets) gets an upper-case first letter.</summary>
    private static string TitleFilter(string s) => string.Concat(WordBeginning().Split(s).Where(p => p.Length > 0)
        .Select(p => char.ToUpperInvariant(p[0]) + p[1..].ToLowerInvariant()));

    private bool ApplyTest(string name, object? v, List<object?> a, Node at)
    {
        object? Arg0() => a.Count > 0 ? a[0] : throw new InvalidOperationException($"test '{name}' needs an argument");
        switch (name)
        {
            case "defined": return v is not JinjaUndefined;
            case "undefined": return v is JinjaUndefined;
            case "none": return v is null;
            case "boolean": return v is bool;
            case "true": return v is true;
            case "false": return v is false;
            case "string": return v is string;
            case "number": return v is long or double;
            case "integer": return v is long;
            case "float": return v is double;
            case "mapping": return v is JinjaDict;
            case "iterable": return v is string or JinjaList or JinjaDict;
            case "sequence": return v is string or JinjaList or JinjaDict;
            case "callable": return v is JinjaCallable;
            case "odd": return JinjaMethods.ToLong(v) % 2 != 0;
            case "even": return JinjaMethods.ToLong(v) % 2 == 0;
            case "divisibleby": return JinjaMethods.ToLong(v) % JinjaMethods.ToLong(Arg0()) == 0;
            case "eq" or "equalto" or "==": return JinjaValues.Equal(v, Arg0());
            case "ne" or "!=": return !JinjaValues.Equal(v, Arg0());
            case "lt" or "lessthan" or "<": return JinjaValues.Compare(v, Arg0()) < 0;
            case "le" or "<=": return JinjaValues.Compare(v, Arg0()) <= 0;
            case "gt" or "greaterthan" or ">": return JinjaValues.Compare(v, Arg0()) > 0;
            case "ge" or ">=": return JinjaValues.Compare(v, Arg0()) >= 0;
            case "in": return JinjaOperators.Contains(Arg0(), v);
            case "lower": return v is string ls && ls == ls.ToLowerInvariant();
            case "upper": return v is string us && us == us.ToUpperInvariant();
            case "sameas": return ReferenceEquals(v, Arg0()) || (v is null && Arg0() is null) || (v is bool b && Arg0() is bool c && b == c);
            case "escaped": return false;
            default: throw new JinjaException($"unknown test '{name}'", at.Line, at.Column);
        }
    }
}
