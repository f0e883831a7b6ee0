// Owns: the global functions a template can call: Jinja2's range, dict, namespace, and the chat-template helpers
// transformers adds — raise_exception(message) (a JinjaRaisedException carrying the template's message) and
// strftime_now(format) (Python strftime directives over the injectable clock, so tests can fix the date).
using System.Globalization;
using System.Text;

namespace Engine.Tokenizers.Jinja;

internal sealed partial class JinjaEvaluator
{
    private const long MaxRange = 100_000;

    private IEnumerable<(string, object?)> Globals()
    {
        yield return ("range", new JinjaCallable("range", (a, _) =>
        {
            long start = 0, stop, step = 1;
            if (a.Count == 1) stop = JinjaMethods.ToLong(a[0]);
            else if (a.Count is 2 or 3)
            {
                start = JinjaMethods.ToLong(a[0]); stop = JinjaMethods.ToLong(a[1]);
                if (a.Count == 3) step = JinjaMethods.ToLong(a[2]);
            }
            else throw new InvalidOperationException($"range expected 1 to 3 arguments, got {a.Count}");
            if (step == 0) throw new InvalidOperationException("range() arg 3 must not be zero");
            var r = new JinjaList();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step)
            {
                if (r.Count >= MaxRange) throw new InvalidOperationException($"range() longer than {MaxRange} items");
                r.Add(i);
            }
            return r;
        }));
        yield return ("namespace", new JinjaCallable("namespace", (a, k) =>
        {
            var ns = new JinjaNamespace();
            foreach (var x in a)
                if (x is JinjaDict d) foreach (var (key, val) in d) ns.Attributes[key] = val;
                else throw new InvalidOperationException("namespace() takes keyword arguments or a mapping");
            foreach (var (key, val) in k) ns.Attributes[key] = val;
            return ns;
        }));
        yield return ("dict", new JinjaCallable("dict", (a, k) =>
        {
            var d = new JinjaDict();
            foreach (var x in a)
                if (x is JinjaDict src) foreach (var (key, val) in src) d[key] = val;
                else throw new InvalidOperationException("dict() takes keyword arguments or a mapping");
            foreach (var (key, val) in k) d[key] = val;
            return d;
        }));
        yield return ("raise_exception", new JinjaCallable("raise_exception", (a, _) =>
            throw new JinjaRaisedException(a.Count > 0 ? JinjaValues.Str(a[0]) : "raise_exception() called", 0, 0)));
        yield return ("strftime_now", new JinjaCallable("strftime_now", (a, _) =>
            Strftime(a.Count > 0 && a[0] is string f ? f : throw new InvalidOperationException("strftime_now needs a format string"), _clock())));
    }

    /// <summary>Python's strftime directives (C locale): %Y %y %m %d %e %B %b %h %A %a %H %I %M %S %p %j %f %z %Z %%.</summary>
    internal static string Strftime(string format, DateTime t)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            char c = format[++i];
            // glibc's "-" flag (no padding), as in "%-d"
            bool noPad = c == '-' && i + 1 < format.Length;
            if (noPad) c = format[++i];
            string Num(int v, int width) => noPad ? v.ToString(ci) : v.ToString(new string('0', width), ci);
            sb.Append(c switch
            {
                'Y' => t.Year.ToString(ci),
                'y' => Num(t.Year % 100, 2),
                'm' => Num(t.Month, 2),
                'd' => Num(t.Day, 2),
                'e' => t.Day.ToString(ci).PadLeft(2),
                'B' => ci.DateTimeFormat.GetMonthName(t.Month),
                'b' or 'h' => ci.DateTimeFormat.GetAbbreviatedMonthName(t.Month),
                'A' => ci.DateTimeFormat.GetDayName(t.DayOfWeek),
                'a' => ci.DateTimeFormat.GetAbbreviatedDayName(t.DayOfWeek),
                'H' => Num(t.Hour, 2),
                'I' => Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2),
                'M' => Num(t.Minute, 2),
                'S' => Num(t.Second, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => Num(t.DayOfYear, 3),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", ci),
                'z' => t.Kind == DateTimeKind.Utc ? "+0000" : "",
                'Z' => t.Kind == DateTimeKind.Utc ? "UTC" : "",
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }
}
