// Owns: one request while the serving loop runs it — its sampler, detokenizer, stop-string matcher, EOS set and output
// channel, and the one place where sample → stop → usage happens (OnLogits / End). Every engine configuration (paged
// KV, recurrent state, the contiguous single-sequence adapter) samples through here, so a greedy request gives the
// same tokens on each.
// Invariants: touched by the loop thread only, except Cancelled (volatile) and the output channel (single reader = the
// caller's enumerator). FinalChunk is set exactly once, when OnLogits returns a usage.
using System.Diagnostics;
using System.Threading.Channels;
using Engine.Memory.Policies;
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Serving;

internal sealed class LiveRequest(int[] prompt, GenerationOptions o, Sampler sampler, IStreamingTextDecoder? decoder,
    StopStringMatcher stops, IReadOnlySet<int> eog)
{
    public long Id;
    public KvPolicySpec? Policy;
    public int Room, FirstHit, Computed, Steps, Generated;
    public volatile bool Cancelled;
    public readonly Channel<GenerationChunk> Output = Channel.CreateUnbounded<GenerationChunk>(new UnboundedChannelOptions { SingleReader = true });
    public GenerationChunk? FinalChunk;
    private readonly List<int> _history = new(prompt);
    private readonly List<int> _pending = new();
    private readonly List<TokenLogProb>? _pendingLogProbs = o.LogProbs is null ? null : new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan _firstToken;

    /// <summary>The prompt token ids (as validated by the engine).</summary>
    public int[] Prompt => prompt;

    /// <summary>Samples from the logits of the last fed position; returns the token (null when it ends without
    /// one) and, when the request ends now, its usage (the final chunk is kept in FinalChunk).</summary>
    public (int? Token, GenerationUsage? Usage) OnLogits(Span<float> logits, int contextLength)
    {
        if (Generated >= o.MaxTokens) return (null, End(FinishReason.Length));
        int id = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history));
        if (Generated == 0) _firstToken = _clock.Elapsed;
        if (o.StopAtEndOfGeneration && eog.Contains(id)) return (id, End(FinishReason.Stop));
        Generated++;
        _history.Add(id);
        _pending.Add(id);
        _pendingLogProbs?.Add(LogProbs.Compute(logits, id, o.LogProbs!.Value));
        string text = stops.Push(decoder?.Push(id) ?? "");
        if (text.Length > 0 || decoder == null || stops.Stopped)
        {
            Output.Writer.TryWrite(new GenerationChunk(text, _pending.ToArray()) { LogProbs = TakeLogProbs() });
            _pending.Clear();
        }
        if (stops.Stopped) return (id, End(FinishReason.StopString));
        if (Generated >= o.MaxTokens) return (id, End(FinishReason.Length));
        if (prompt.Length + Generated - 1 >= contextLength || Generated >= Room) return (id, End(FinishReason.ContextFull));
        return (id, null);
    }

    private GenerationUsage End(FinishReason finish)
    {
        string tail = stops.Stopped ? "" : stops.Push(decoder?.Flush() ?? "") + stops.Flush();
        var total = _clock.Elapsed;
        if (Generated == 0) _firstToken = total;
        double decodeSeconds = (total - _firstToken).TotalSeconds;
        int promptComputed = prompt.Length - FirstHit;
        var usage = new GenerationUsage(prompt.Length, Generated, _firstToken, total,
            _firstToken.TotalSeconds > 0 ? promptComputed / _firstToken.TotalSeconds : 0,
            Generated > 1 && decodeSeconds > 0 ? (Generated - 1) / decodeSeconds : 0, finish, FirstHit);
        FinalChunk = new GenerationChunk(tail, _pending.ToArray()) { LogProbs = TakeLogProbs() };
        _pending.Clear();
        return usage;
    }

    private TokenLogProb[]? TakeLogProbs()
    {
        if (_pendingLogProbs == null) return null;
        var a = _pendingLogProbs.ToArray();
        _pendingLogProbs.Clear();
        return a;
    }
}
