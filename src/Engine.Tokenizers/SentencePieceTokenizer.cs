// Owns: SentencePiece-style BPE (GGUF tokenizer.ggml.model = "llama", llama2.c tokenizers).
// Algorithm (llama.cpp llm_tokenizer_spm, after SentencePiece's BPE model): spaces become U+2581 and, when
// AddSpacePrefix, one "▁" is prepended to a fragment that starts the text or follows a special token; the text
// starts as one symbol per code point; a max-heap of adjacent pairs whose concatenation is a vocabulary token,
// keyed by that token's score (ties: leftmost), merges greedily; stale heap entries are skipped by length check.
// Leftover symbols that are no token fall back to byte tokens "<0xNN>" of their UTF-8 bytes (or UNK).
// Cost: O(n log n) per fragment; lookups through span-keyed dictionary (no allocation per pair).
using Engine.Formats;
using System.Globalization;
using System.Text;

namespace Engine.Tokenizers;

public sealed class SentencePieceTokenizer : Tokenizer
{
    private const char SpaceMark = '\u2581';
    private readonly float[] _scores;
    private readonly int[] _byteTokens = new int[256]; // [256] id of <0xNN>, -1 if none

    public SentencePieceTokenizer(Vocabulary vocabulary) : base(vocabulary)
    {
        if (vocabulary.Model != TokenizerModel.SentencePiece)
            throw new ArgumentException($"{vocabulary.Source}: not a SentencePiece vocabulary");
        _scores = vocabulary.Scores ?? new float[vocabulary.Tokens.Length];
        for (int b = 0; b < 256; b++)
        {
            if (Lookup.TryGetValue($"<0x{b:X2}>", out var id)) _byteTokens[b] = id;
            else if (b < 128 && Lookup.TryGetValue(((char)b).ToString(), out id)) _byteTokens[b] = id;
            else _byteTokens[b] = vocabulary.Unk ?? -1;
        }
    }

    protected internal override bool StripsLeadingSpace => Vocabulary.AddSpacePrefix;

    /// <summary>Parses "&lt;0xNN&gt;" (two hex digits) into the byte it stands for.</summary>
    public static bool TryParseByteToken(string? text, out byte value)
    {
        value = 0;
        return text is { Length: 6 } && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>'
            && byte.TryParse(text.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    protected override byte[] TokenBytes(int id)
    {
        var text = Vocabulary.Tokens[id] ?? "";
        if (Types[id] == TokenType.Byte && TryParseByteToken(text, out var b)) return [b];
        return Encoding.UTF8.GetBytes(text.Replace(SpaceMark, ' '));
    }

    private struct Symbol { public int Prev, Next, Start, Length; }

    private readonly struct Bigram(int left, int right, float score, int length)
    {
        public readonly int Left = left, Right = right, Length = length;
        public readonly float Score = score;
    }

    /// <summary>Max score first, then leftmost.</summary>
    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();
        public int Compare(Bigram a, Bigram b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left);
    }

    protected override void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output)
    {
        // Escaped text: optional "▁" prefix, ' ' → '▁'.
        bool prefix = Vocabulary.AddSpacePrefix && afterSpecial;
        var chars = new char[fragment.Length + (prefix ? 1 : 0)];
        int o = 0;
        if (prefix) chars[o++] = SpaceMark;
        foreach (var c in fragment) chars[o++] = c == ' ' ? SpaceMark : c;
        var text = chars.AsSpan();
        if (text.Length == 0) return;

        // One symbol per code point.
        var symbols = new List<Symbol>(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            symbols.Add(new Symbol { Prev = symbols.Count - 1, Next = i + len < text.Length ? symbols.Count + 1 : -1, Start = i, Length = len });
            i += len;
        }
        var sym = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(symbols);

        var queue = new PriorityQueue<Bigram, Bigram>(BigramOrder.Instance);
        for (int i = 1; i < sym.Length; i++) TryAddBigram(text, sym, i - 1, i, queue);

        while (queue.TryDequeue(out var bigram, out _))
        {
            ref var left = ref sym[bigram.Left];
            ref var right = ref sym[bigram.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Length) continue; // stale
            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) sym[right.Next].Prev = bigram.Left;
            TryAddBigram(text, sym, left.Prev, bigram.Left, queue);
            TryAddBigram(text, sym, bigram.Left, left.Next, queue);
        }

        Span<byte> utf8 = stackalloc byte[8];
        for (int i = 0; i != -1 && i < sym.Length; i = sym[i].Next)
        {
            var piece = text.Slice(sym[i].Start, sym[i].Length);
            if (Lookup.TryGetValue(piece, out var id)) { output.Add(id); continue; }
            // Byte fallback.
            int n = Encoding.UTF8.GetBytes(piece, utf8);
            for (int k = 0; k < n; k++)
            {
                int bt = _byteTokens[utf8[k]];
                if (bt >= 0) output.Add(bt);
            }
        }
    }

    private void TryAddBigram(ReadOnlySpan<char> text, Span<Symbol> sym, int left, int right, PriorityQueue<Bigram, Bigram> queue)
    {
        if (left < 0 || right < 0) return;
        int start = sym[left].Start, length = sym[left].Length + sym[right].Length;
        if (!Lookup.TryGetValue(text.Slice(start, length), out var id)) return;
        var b = new Bigram(left, right, _scores[id], length);
        queue.Enqueue(b, b);
    }
}
