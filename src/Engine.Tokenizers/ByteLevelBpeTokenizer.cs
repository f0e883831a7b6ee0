// Owns: byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"; Hugging Face tokenizer.json model BPE with a
// ByteLevel pre-tokenizer: GPT-2, Llama 3, Qwen 2/3, ...).
// Algorithm (GPT-2 / llama.cpp llm_tokenizer_bpe): pre-tokenize into words with the family regexes; map each
// word's UTF-8 bytes to GPT-2's byte-unicode chars; with IgnoreMerges a word that is itself a token is emitted
// whole; otherwise start from one symbol per byte and repeatedly merge the adjacent pair with the lowest merge
// rank (ties: leftmost) through a min-heap, skipping stale entries; each final symbol is a token, or else its
// bytes are emitted one token each. Words are cached (text → ids), so repeated words cost one lookup.
using Engine.Formats;
using System.Runtime.InteropServices;
using System.Text;

namespace Engine.Tokenizers;

public sealed class ByteLevelBpeTokenizer : Tokenizer
{
    private const int CacheLimit = 200_000;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _ranks; // "left right" → rank
    private readonly PreTokenizer _preTokenizer;
    private readonly Dictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly Lock _cacheLock = new();

    public ByteLevelBpeTokenizer(Vocabulary vocabulary) : base(vocabulary)
    {
        if (vocabulary.Model != TokenizerModel.ByteLevelBpe)
            throw new ArgumentException($"{vocabulary.Source}: not a byte-level BPE vocabulary");
        var merges = vocabulary.Merges ?? [];
        var ranks = new Dictionary<string, int>(merges.Length, StringComparer.Ordinal);
        for (int i = 0; i < merges.Length; i++)
        {
            var m = merges[i];
            if (m == null || m.IndexOf(' ', 1) < 0)
                throw new ArgumentException($"{vocabulary.Source}: merge {i} '{m}' is not 'left right'");
            ranks.TryAdd(m, i); // first occurrence keeps the lowest rank
        }
        _ranks = ranks.GetAlternateLookup<ReadOnlySpan<char>>();
        _preTokenizer = vocabulary.PreTokenizerPatterns is { Count: > 0 } patterns
            ? PreTokenizer.FromPatterns(patterns)
            : PreTokenizer.ForName(vocabulary.PreTokenizer ?? "default");
    }

    /// <summary>The pre-tokenizer family in use ("gpt-2", "llama-bpe", "qwen2", ... or "custom").</summary>
    public string PreTokenizerName => _preTokenizer.Name;

    protected override byte[] TokenBytes(int id)
    {
        var text = Vocabulary.Tokens[id] ?? "";
        var bytes = new List<byte>(text.Length);
        foreach (var c in text)
        {
            if (ByteLevel.TryDecode(c, out var b)) bytes.Add(b);
            else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString())); // not a mapped char: keep it as text
        }
        return bytes.ToArray();
    }

    protected override void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output)
    {
        var text = fragment.ToString();
        var words = new List<(int Start, int Length)>();
        _preTokenizer.Split(text, words);
        foreach (var (start, length) in words)
        {
            var word = text.Substring(start, length);
            int[]? ids;
            lock (_cacheLock) _cache.TryGetValue(word, out ids);
            if (ids == null)
            {
                ids = EncodeWord(word);
                lock (_cacheLock)
                {
                    if (_cache.Count >= CacheLimit) _cache.Clear();
                    _cache[word] = ids;
                }
            }
            output.AddRange(ids);
        }
    }

    private struct Symbol { public int Prev, Next, Start, Length; }

    private readonly record struct Bigram(int Left, int Right, int Rank, int Length);

    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();
        public int Compare(Bigram a, Bigram b) => a.Rank != b.Rank ? a.Rank.CompareTo(b.Rank) : a.Left.CompareTo(b.Left);
    }

    private int[] EncodeWord(string word)
    {
        // Mapped text: one char per UTF-8 byte.
        var utf8 = Encoding.UTF8.GetBytes(word);
        var mapped = new char[utf8.Length];
        ByteLevel.Encode(utf8, mapped);
        var text = mapped.AsSpan();
        var output = new List<int>();
        if (Vocabulary.IgnoreMerges && Lookup.TryGetValue(text, out var whole)) return [whole];

        var symbols = new Symbol[text.Length];
        for (int i = 0; i < text.Length; i++)
            symbols[i] = new Symbol { Prev = i - 1, Next = i + 1 < text.Length ? i + 1 : -1, Start = i, Length = 1 };

        var queue = new PriorityQueue<Bigram, Bigram>(BigramOrder.Instance);
        char[] keyBuffer = new char[text.Length + 1];
        for (int i = 1; i < symbols.Length; i++) TryAddBigram(text, symbols, i - 1, i, queue, keyBuffer);

        while (queue.TryDequeue(out var bigram, out _))
        {
            ref var left = ref symbols[bigram.Left];
            ref var right = ref symbols[bigram.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Length) continue; // stale
            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = bigram.Left;
            TryAddBigram(text, symbols, left.Prev, bigram.Left, queue, keyBuffer);
            TryAddBigram(text, symbols, bigram.Left, left.Next, queue, keyBuffer);
        }

        for (int i = 0; i != -1 && i < symbols.Length; i = symbols[i].Next)
        {
            var piece = text.Slice(symbols[i].Start, symbols[i].Length);
            if (Lookup.TryGetValue(piece, out var id)) { output.Add(id); continue; }
            for (int k = 0; k < piece.Length; k++)
                if (Lookup.TryGetValue(piece.Slice(k, 1), out var b)) output.Add(b);
        }
        return output.ToArray();
    }

    private void TryAddBigram(ReadOnlySpan<char> text, Symbol[] symbols, int left, int right,
        PriorityQueue<Bigram, Bigram> queue, char[] keyBuffer)
    {
        if (left < 0 || right < 0) return;
        var l = text.Slice(symbols[left].Start, symbols[left].Length);
        var r = text.Slice(symbols[right].Start, symbols[right].Length);
        l.CopyTo(keyBuffer);
        keyBuffer[l.Length] = ' ';
        r.CopyTo(keyBuffer.AsSpan(l.Length + 1));
        if (!_ranks.TryGetValue(keyBuffer.AsSpan(0, l.Length + 1 + r.Length), out var rank)) return;
        var b = new Bigram(left, right, rank, l.Length + r.Length);
        queue.Enqueue(b, b);
    }
}
