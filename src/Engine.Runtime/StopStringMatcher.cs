// Owns: cutting streamed text at stop strings without ever emitting part of one.
// Invariant: text is released only when no stop string can still start inside it; a stop string split across pieces
// is still found. Earliest match wins.
namespace Engine.Runtime;

public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private string _pending = "";

    public StopStringMatcher(IEnumerable<string> stops) => _stops = stops.Where(s => s.Length > 0).ToArray();

    public bool Stopped { get; private set; }

    /// <summary>Adds a piece; returns the text now safe to emit. After a match, <see cref="Stopped"/> is true and later pieces are ignored.</summary>
    public string Push(string piece)
    {
        if (Stopped) return "";
        if (_stops.Length == 0) return piece;
        _pending += piece;
        int first = -1;
        foreach (var s in _stops)
        {
            int i = _pending.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (first < 0 || i < first)) first = i;
        }
        if (first >= 0)
        {
            Stopped = true;
            var emit = _pending[..first];
            _pending = "";
            return emit;
        }
        int hold = 0;
        foreach (var s in _stops)
            for (int len = Math.Min(s.Length - 1, _pending.Length); len > hold; len--)
                if (_pending.AsSpan(_pending.Length - len).SequenceEqual(s.AsSpan(0, len))) { hold = len; break; }
        var ready = _pending[..^hold];
        _pending = _pending[^hold..];
        return ready;
    }

    /// <summary>The held-back text at the end of the stream (no stop string matched).</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }
}
