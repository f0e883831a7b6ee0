// Owns: the Python methods templates call on values: str (strip/lstrip/rstrip with optional chars, split/rsplit,
// startswith/endswith with a str or tuple, upper, lower, title, capitalize, replace, find, count, join, isdigit...),
// dict (items, keys, values, get) and list (append, extend, pop, index, count). Semantics are Python's
// (str.split() without a separator splits on whitespace runs and drops empty parts). Unknown names → null so the
// caller yields Undefined, and calling that gives an error naming the method.
using System.Globalization;
using System.Text;

namespace Engine.Tokenizers.Jinja;

internal static class JinjaMethods
{
    private static JinjaCallable M(string name, JinjaFunction f) => new(name, f);

    internal static object? Arg(List<object?> args, List<(string Name, object? Value)> kwargs, int index, string name, object? dflt = null)
    {
        if (index < args.Count) return args[index];
        foreach (var (n, v) in kwargs) if (n == name) return v;
        return dflt;
    }

    internal static string? StrArg(List<object?> args, List<(string, object?)> kwargs, int index, string name, string method)
    {
        var v = Arg(args, kwargs, index, name);
        return v switch
        {
            null or JinjaUndefined => null,
            string s => s,
            _ => throw new InvalidOperationException($"{method}() argument must be str or None, not {JinjaValues.TypeName(v)}"),
        };
    }

    public static JinjaCallable? StringMethod(string s, string name) => name switch
    {
        "strip" => M(name, (a, k) => StrArg(a, k, 0, "chars", name) is { } c ? s.Trim(c.ToCharArray()) : s.Trim()),
        "lstrip" => M(name, (a, k) => StrArg(a, k, 0, "chars", name) is { } c ? s.TrimStart(c.ToCharArray()) : s.TrimStart()),
        "rstrip" => M(name, (a, k) => StrArg(a, k, 0, "chars", name) is { } c ? s.TrimEnd(c.ToCharArray()) : s.TrimEnd()),
        "split" => M(name, (a, k) => Split(s, StrArg(a, k, 0, "sep", name), ToLong(Arg(a, k, 1, "maxsplit", -1L)), fromRight: false)),
        "rsplit" => M(name, (a, k) => Split(s, StrArg(a, k, 0, "sep", name), ToLong(Arg(a, k, 1, "maxsplit", -1L)), fromRight: true)),
        "splitlines" => M(name, (_, _) => SplitLines(s)),
        "startswith" => M(name, (a, k) => Affix(s, Arg(a, k, 0, "prefix"), start: true)),
        "endswith" => M(name, (a, k) => Affix(s, Arg(a, k, 0, "suffix"), start: false)),
        "upper" => M(name, (_, _) => s.ToUpperInvariant()),
        "lower" => M(name, (_, _) => s.ToLowerInvariant()),
        "title" => M(name, (_, _) => Title(s)),
        "capitalize" => M(name, (_, _) => Capitalize(s)),
        "replace" => M(name, (a, k) => Replace(s, StrArg(a, k, 0, "old", name) ?? "", StrArg(a, k, 1, "new", name) ?? "", ToLong(Arg(a, k, 2, "count", -1L)))),
        "find" => M(name, (a, k) => (long)s.IndexOf(StrArg(a, k, 0, "sub", name) ?? "", StringComparison.Ordinal)),
        "rfind" => M(name, (a, k) => (long)s.LastIndexOf(StrArg(a, k, 0, "sub", name) ?? "", StringComparison.Ordinal)),
        "count" => M(name, (a, k) => CountOf(s, StrArg(a, k, 0, "sub", name) ?? "")),
        "join" => M(name, (a, k) => string.Join(s, JinjaValues.Iterate(Arg(a, k, 0, "iterable")).Select(JinjaValues.Str))),
        "isdigit" => M(name, (_, _) => s.Length > 0 && s.All(char.IsDigit)),
        "isalpha" => M(name, (_, _) => s.Length > 0 && s.All(char.IsLetter)),
        "isspace" => M(name, (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
        "islower" => M(name, (_, _) => s.Any(char.IsLetter) && !s.Any(char.IsUpper)),
        "isupper" => M(name, (_, _) => s.Any(char.IsLetter) && !s.Any(char.IsLower)),
        _ => null,
    };

    public static JinjaCallable? DictMethod(JinjaDict d, string name) => name switch
    {
        "items" => M(name, (_, _) => new JinjaList(d.Select(p => (object?)new JinjaList { p.Key, p.Value }.AsTuple()))),
        "keys" => M(name, (_, _) => new JinjaList(d.Keys)),
        "values" => M(name, (_, _) => new JinjaList(d.Values)),
        "get" => M(name, (a, k) => Arg(a, k, 0, "key") is string key && d.TryGetValue(key, out var v) ? v : Arg(a, k, 1, "default")),
        _ => null,
    };

    public static JinjaCallable? ListMethod(JinjaList l, string name) => name switch
    {
        "append" => M(name, (a, k) => { l.Add(Arg(a, k, 0, "object")); return null; }),
        "extend" => M(name, (a, k) => { l.AddRange(JinjaValues.Iterate(Arg(a, k, 0, "iterable")).ToList()); return null; }),
        "pop" => M(name, (a, k) =>
        {
            if (l.Count == 0) throw new InvalidOperationException("pop from empty list");
            long i = ToLong(Arg(a, k, 0, "index", -1L));
            if (i < 0) i += l.Count;
            if (i < 0 || i >= l.Count) throw new InvalidOperationException("pop index out of range");
            var v = l[(int)i];
            l.RemoveAt((int)i);
            return v;
        }),
        "index" => M(name, (a, k) =>
        {
            var x = Arg(a, k, 0, "value");
            int i = l.FindIndex(y => JinjaValues.Equal(x, y));
            return i >= 0 ? (long)i : throw new InvalidOperationException($"{JinjaValues.Repr(x)} is not in list");
        }),
        "count" => M(name, (a, k) => (long)l.Count(y => JinjaValues.Equal(Arg(a, k, 0, "value"), y))),
        _ => null,
    };

    internal static JinjaList AsTuple(this JinjaList l) => new(l) { IsTuple = true };

    internal static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d when d == Math.Floor(d) => (long)d,
        _ => throw new InvalidOperationException($"expected an integer, got {JinjaValues.TypeName(v)}"),
    };

    /// <summary>Python str.splitlines(): breaks at \n, \r\n and \r; no empty last part for a trailing break.</summary>
    private static JinjaList SplitLines(string s)
    {
        var parts = new JinjaList();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] is not ('\n' or '\r')) continue;
            parts.Add(s[start..i]);
            if (s[i] == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
            start = i + 1;
        }
        if (start < s.Length) parts.Add(s[start..]);
        return parts;
    }

    private static bool Affix(string s, object? what, bool start)
    {
        IEnumerable<object?> options = what is JinjaList l ? l : [what];
        foreach (var o in options)
        {
            if (o is not string p)
                throw new InvalidOperationException($"{(start ? "startswith" : "endswith")} first arg must be str or a tuple of str, not {JinjaValues.TypeName(o)}");
            if (start ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    private static JinjaList Split(string s, string? sep, long maxSplit, bool fromRight)
    {
        if (sep == "") throw new InvalidOperationException("empty separator");
        List<string> parts;
        if (sep == null)
        {
            var words = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).ToList();
            if (maxSplit < 0 || words.Count <= maxSplit + 1) parts = words;
            else if (!fromRight)
            {
                // Python keeps the remainder (leading whitespace removed) as the last part.
                parts = [];
                int pos = 0;
                for (int n = 0; n < maxSplit; n++)
                {
                    while (pos < s.Length && char.IsWhiteSpace(s[pos])) pos++;
                    int e = pos;
                    while (e < s.Length && !char.IsWhiteSpace(s[e])) e++;
                    parts.Add(s[pos..e]);
                    pos = e;
                }
                parts.Add(s[pos..].TrimStart());
            }
            else
            {
                parts = [];
                int pos = s.Length;
                for (int n = 0; n < maxSplit; n++)
                {
                    while (pos > 0 && char.IsWhiteSpace(s[pos - 1])) pos--;
                    int b = pos;
                    while (b > 0 && !char.IsWhiteSpace(s[b - 1])) b--;
                    parts.Insert(0, s[b..pos]);
                    pos = b;
                }
                parts.Insert(0, s[..pos].TrimEnd());
            }
        }
        else if (maxSplit < 0) parts = s.Split(sep).ToList();
        else if (!fromRight) parts = s.Split(sep, (int)Math.Min(maxSplit + 1, int.MaxValue)).ToList();
        else
        {
            parts = [];
            string rest = s;
            for (int n = 0; n < maxSplit; n++)
            {
                int i = rest.LastIndexOf(sep, StringComparison.Ordinal);
                if (i < 0) break;
                parts.Insert(0, rest[(i + sep.Length)..]);
                rest = rest[..i];
            }
            parts.Insert(0, rest);
        }
        return new JinjaList(parts.Select(p => (object?)p));
    }

    private static string Replace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertEverywhere(s, @new) : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (i < 0 || old.Length == 0) break;
            sb.Append(s, pos, i - pos).Append(@new);
            pos = i + old.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    private static string InsertEverywhere(string s, string x)
    {
        var sb = new StringBuilder(x);
        foreach (char c in s) sb.Append(c).Append(x);
        return sb.ToString();
    }

    private static long CountOf(string s, string sub)
    {
        if (sub.Length == 0) return s.Length + 1;
        long n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    /// <summary>Python str.title(): a letter after a non-letter is upper-cased, other letters lower-cased.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevLetter = false;
        foreach (char c in s)
        {
            sb.Append(char.IsLetter(c) ? (prevLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)) : c);
            prevLetter = char.IsLetter(c);
        }
        return sb.ToString();
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpper(s[0], CultureInfo.InvariantCulture) + s[1..].ToLowerInvariant();
}
