// Owns: making names and values read from files or given by users safe to put in a one-line error message: control and
// non-printable characters escaped (\xNN, \uNNNN), quoted runs ('…') longer than MaxQuoted cut with their length noted,
// and the whole message capped, so a 115 KB binary "key" in a mutated file cannot flood the terminal.
// Invariants: the result is one line (no CR/LF), at most MaxMessage characters plus a short "(N chars)" note; text that
// is already short and printable comes back unchanged.
using System.Text;

namespace Engine.Tensors;

public static class ErrorText
{
    /// <summary>Longest quoted name or value kept whole.</summary>
    public const int MaxQuoted = 80;
    /// <summary>Longest message kept whole.</summary>
    public const int MaxMessage = 600;

    /// <summary>A name or value for an error message: escaped, cut to <see cref="MaxQuoted"/> characters, in single quotes.</summary>
    public static string Quote(string? value)
    {
        if (value == null) return "(null)";
        var escaped = Escape(value.Length <= MaxQuoted ? value : value[..MaxQuoted]);
        return value.Length <= MaxQuoted && escaped.Length <= MaxQuoted ? $"'{escaped}'"
            : $"'{escaped[..Math.Min(escaped.Length, MaxQuoted - 1)]}…' ({value.Length} chars)";
    }

    /// <summary>A whole message made safe: escaped, long quoted runs cut, capped at <see cref="MaxMessage"/> characters.</summary>
    public static string Clean(string? message)
    {
        if (string.IsNullOrEmpty(message)) return message ?? "";
        var s = Escape(message);
        if (s.Length > MaxQuoted + 2 && s.Contains('\''))
        {
            var sb = new StringBuilder(Math.Min(s.Length, 2 * MaxMessage));
            int i = 0;
            while (i < s.Length)
            {
                int open = s.IndexOf('\'', i);
                if (open < 0) { sb.Append(s, i, s.Length - i); break; }
                int close = s.IndexOf('\'', open + 1);
                if (close < 0) { sb.Append(s, i, s.Length - i); break; }
                sb.Append(s, i, open - i);
                int len = close - open - 1;
                if (len <= MaxQuoted) sb.Append(s, open, len + 2);
                else sb.Append('\'').Append(s, open + 1, MaxQuoted - 1).Append("…' (").Append(len).Append(" chars)");
                i = close + 1;
            }
            s = sb.ToString();
        }
        return s.Length <= MaxMessage ? s : $"{s[..(MaxMessage - 1)]}… ({s.Length} chars)";
    }

    private static string Escape(string value)
    {
        bool clean = true;
        foreach (char ch in value) if (NeedsEscape(ch)) { clean = false; break; }
        if (clean) return value;
        var sb = new StringBuilder(value.Length + 16);
        foreach (char ch in value)
        {
            if (!NeedsEscape(ch)) sb.Append(ch);
            else if (ch <= 0xff) sb.Append("\\x").Append(((int)ch).ToString("x2"));
            else sb.Append("\\u").Append(((int)ch).ToString("x4"));
        }
        return sb.ToString();
    }

    private static bool NeedsEscape(char ch) =>
        char.IsControl(ch) || ch == '\uFFFD' || ch is '\u2028' or '\u2029' or '\u200e' or '\u200f' or '\u202e';
}
