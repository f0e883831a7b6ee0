// Owns: Python semantics of the binary and comparison operators on interpreter values: + (numbers, str, list),
// - * / // % ** (numbers; str/list repetition with *), ~ (string concatenation of str()), == != < > <= >=, in / not in
// (substring, list membership, dict key). Integer arithmetic stays integral (long), / always gives a float, // and %
// floor toward negative infinity as Python does. Type mismatches raise InvalidOperationException with Python's wording.
namespace Engine.Tokenizers.Jinja;

internal static class JinjaOperators
{
    private const long MaxRepeat = 1 << 24;

    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "~") return JinjaValues.Str(a) + JinjaValues.Str(b);
        if (a is JinjaUndefined ua) throw new InvalidOperationException($"'{ua.Name}' is undefined");
        if (b is JinjaUndefined ub) throw new InvalidOperationException($"'{ub.Name}' is undefined");
        switch (op)
        {
            case "+":
                if (a is string sa && b is string sb) return sa + sb;
                if (a is JinjaList la && b is JinjaList lb) return new JinjaList(la.Concat(lb)) { IsTuple = la.IsTuple && lb.IsTuple };
                return Arith(op, a, b);
            case "*":
                if (a is string s1 && b is long n1) return Repeat(s1, n1);
                if (a is long n2 && b is string s2) return Repeat(s2, n2);
                if (a is JinjaList l1 && b is long n3) return RepeatList(l1, n3);
                return Arith(op, a, b);
            case "%" when a is string:
                throw new InvalidOperationException("printf-style '%' string formatting is not supported; use ~ or format filters");
            default:
                return Arith(op, a, b);
        }
    }

    private static string Repeat(string s, long n)
    {
        if (n <= 0) return "";
        if (n * s.Length > MaxRepeat) throw new InvalidOperationException($"string repetition of {n} is too large");
        return string.Concat(Enumerable.Repeat(s, (int)n));
    }

    private static JinjaList RepeatList(JinjaList l, long n)
    {
        if (n * l.Count > MaxRepeat) throw new InvalidOperationException($"list repetition of {n} is too large");
        var r = new JinjaList();
        for (long i = 0; i < n; i++) r.AddRange(l);
        return r;
    }

    private static object Arith(string op, object? a, object? b)
    {
        if (!JinjaValues.IsNumber(a) || !JinjaValues.IsNumber(b))
            throw new InvalidOperationException($"unsupported operand type(s) for {op}: '{JinjaValues.TypeName(a)}' and '{JinjaValues.TypeName(b)}'");
        bool ints = a is long or bool && b is long or bool;
        if (ints)
        {
            long x = (long)JinjaValues.ToDouble(a), y = (long)JinjaValues.ToDouble(b);
            switch (op)
            {
                case "+": return checked(x + y);
                case "-": return checked(x - y);
                case "*": return checked(x * y);
                case "/": if (y == 0) throw new InvalidOperationException("division by zero"); return (double)x / y;
                case "//": if (y == 0) throw new InvalidOperationException("integer division by zero"); return FloorDiv(x, y);
                case "%": if (y == 0) throw new InvalidOperationException("integer modulo by zero"); return x - FloorDiv(x, y) * y;
                case "**":
                    if (y < 0) return Math.Pow(x, y);
                    long r = 1;
                    for (long i = 0; i < y; i++) r = checked(r * x);
                    return r;
            }
        }
        double p = JinjaValues.ToDouble(a), q = JinjaValues.ToDouble(b);
        return op switch
        {
            "+" => p + q,
            "-" => p - q,
            "*" => p * q,
            "/" => q == 0 ? throw new InvalidOperationException("float division by zero") : p / q,
            "//" => q == 0 ? throw new InvalidOperationException("float divmod()") : Math.Floor(p / q),
            "%" => q == 0 ? throw new InvalidOperationException("float modulo") : p - Math.Floor(p / q) * q,
            "**" => Math.Pow(p, q),
            _ => throw new InvalidOperationException($"unknown operator '{op}'"),
        };
    }

    private static long FloorDiv(long x, long y)
    {
        long q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
        return q;
    }

    public static bool Compare(string op, object? a, object? b) => op switch
    {
        "==" => JinjaValues.Equal(a, b),
        "!=" => !JinjaValues.Equal(a, b),
        "<" => JinjaValues.Compare(a, b) < 0,
        ">" => JinjaValues.Compare(a, b) > 0,
        "<=" => JinjaValues.Compare(a, b) <= 0,
        ">=" => JinjaValues.Compare(a, b) >= 0,
        "in" => Contains(b, a),
        "not in" => !Contains(b, a),
        _ => throw new InvalidOperationException($"unknown comparison '{op}'"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw new InvalidOperationException($"'in <string>' requires string as left operand, not {JinjaValues.TypeName(item)}"),
        JinjaList l => l.Any(x => JinjaValues.Equal(x, item)),
        JinjaDict d => item is string k && d.ContainsKey(k),
        JinjaNamespace ns => item is string k2 && ns.Attributes.ContainsKey(k2),
        JinjaUndefined u => throw new InvalidOperationException($"'{u.Name}' is undefined"),
        _ => throw new InvalidOperationException($"argument of type '{JinjaValues.TypeName(container)}' is not iterable"),
    };
}
