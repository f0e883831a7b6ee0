// Owns: the public tokenizer contract and what SPM and byte-level BPE share: the token table, special-token
// partitioning (llama.cpp tokenizer_st_partition), BOS/EOS insertion, end-of-generation ids, and decoding.
// Invariants: ids are 0..VocabSize-1; Encode never returns an id outside that range; Decode of valid ids never
// throws (invalid UTF-8 becomes U+FFFD; an out-of-range id is an ArgumentOutOfRangeException);
// Decode(ids) == the concatenated StreamingDecoder output. Per-token byte pieces are computed lazily (fast load).
// Special tokens: CONTROL and UNKNOWN tokens are matched atomically only when parseSpecial is true;
// USER_DEFINED tokens are always matched atomically (as llama.cpp does); longest text first.
using Engine.Formats;
using System.Text;

namespace Engine.Tokenizers;

public abstract partial class Tokenizer
{
    private static readonly string[] EogTexts =
        ["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "<|return|>", "<|call|>"];

    private readonly Dictionary<string, int> _tokenToId;
    private readonly int[] _eog;                  // sorted end-of-generation ids
    private readonly int[] _specialIds;          // CONTROL / USER_DEFINED / UNKNOWN ids, longest text first
    private readonly byte[]?[] _pieceBytes;       // [VocabSize] bytes each token decodes to (specials: empty); lazily filled
    private readonly byte[]?[] _specialBytes;     // [VocabSize] bytes with specials rendered as their text; lazily filled

    protected Tokenizer(Vocabulary vocabulary)
    {
        Vocabulary = vocabulary;
        var tokens = vocabulary.Tokens;
        if (tokens.Length == 0) throw new ArgumentException($"{vocabulary.Source}: the vocabulary is empty");
        if (vocabulary.Scores != null && vocabulary.Scores.Length != tokens.Length)
            throw new ArgumentException($"{vocabulary.Source}: {vocabulary.Scores.Length} scores for {tokens.Length} tokens");
        if (vocabulary.Types != null && vocabulary.Types.Length != tokens.Length)
            throw new ArgumentException($"{vocabulary.Source}: {vocabulary.Types.Length} token types for {tokens.Length} tokens");
        CheckId(vocabulary.Bos, "BOS"); CheckId(vocabulary.Eos, "EOS"); CheckId(vocabulary.Unk, "UNK"); CheckId(vocabulary.Pad, "PAD");

        Types = vocabulary.Types ?? DefaultTypes(tokens, vocabulary.Model);
        _tokenToId = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) _tokenToId[tokens[i] ?? ""] = i; // later duplicates win, as in llama.cpp
        Lookup = _tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();

        _specialIds = Enumerable.Range(0, tokens.Length)
            .Where(i => Types[i] is TokenType.Control or TokenType.UserDefined or TokenType.Unknown && !string.IsNullOrEmpty(tokens[i]))
            .OrderByDescending(i => tokens[i].Length).ThenBy(i => i).ToArray();

        var eog = new SortedSet<int>();
        if (vocabulary.Eos is int e) eog.Add(e);
        foreach (var id in vocabulary.ExtraEog ?? []) { CheckId(id, "EOG"); eog.Add(id); }
        foreach (var text in EogTexts)
            if (_tokenToId.TryGetValue(text, out var id) && Types[id] is TokenType.Control or TokenType.UserDefined) eog.Add(id);
        _eog = eog.ToArray();
        EogIds = Array.AsReadOnly(_eog);

        _pieceBytes = new byte[tokens.Length][];
        _specialBytes = new byte[tokens.Length][];
    }

    private byte[] Piece(int id, bool renderSpecial)
    {
        var table = renderSpecial ? _specialBytes : _pieceBytes;
        var cached = Volatile.Read(ref table[id]);
        if (cached != null) return cached;
        var t = Types[id];
        byte[] rendered = t is TokenType.Control or TokenType.Unknown or TokenType.UserDefined
            ? Encoding.UTF8.GetBytes(Vocabulary.Tokens[id] ?? "")
            : TokenBytes(id);
        byte[] value = !renderSpecial && t is TokenType.Control or TokenType.Unknown or TokenType.Unused ? [] : rendered;
        Volatile.Write(ref table[id], value);
        return value;
    }

    private void CheckId(int? id, string what)
    {
        if (id is int v && (v < 0 || v >= Vocabulary.Tokens.Length))
            throw new ArgumentException($"{Vocabulary.Source}: {what} id {v} is outside the vocabulary (0..{Vocabulary.Tokens.Length - 1})");
    }

    private static TokenType[] DefaultTypes(string[] tokens, TokenizerModel model)
    {
        var types = new TokenType[tokens.Length];
        for (int i = 0; i < tokens.Length; i++)
            types[i] = model == TokenizerModel.SentencePiece && SentencePieceTokenizer.TryParseByteToken(tokens[i], out _)
                ? TokenType.Byte : TokenType.Normal;
        return types;
    }

    /// <summary>Vocabulary text → id, looked up by span (no allocation).</summary>
    protected Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> Lookup { get; }

    public Vocabulary Vocabulary { get; }
    public TokenizerModel Model => Vocabulary.Model;
    public int VocabSize => Vocabulary.Tokens.Length;
    public int? Bos => Vocabulary.Bos;
    public int? Eos => Vocabulary.Eos;
    public bool AddBos => Vocabulary.AddBos;
    public bool AddEos => Vocabulary.AddEos;
    /// <summary>End-of-generation ids: EOS plus EOT-like control tokens (sorted).</summary>
    public IReadOnlyList<int> EogIds { get; }
    public IReadOnlyList<TokenType> Types { get; }

    public bool IsEog(int id) => Array.BinarySearch(_eog, id) >= 0;

    /// <summary>The id whose vocabulary text is exactly <paramref name="text"/>, or null.</summary>
    public int? TokenToId(string text) => _tokenToId.TryGetValue(text, out var id) ? id : null;

    /// <summary>The token's text exactly as the vocabulary stores it ("▁the", "Ġthe", "&lt;0x0A&gt;", "&lt;|im_end|&gt;").</summary>
    public string TokenText(int id) => Vocabulary.Tokens[CheckedId(id)];

    /// <summary>The token as readable text: its decoded bytes (special tokens as their text) when they are valid
    /// UTF-8 on their own, otherwise the vocabulary text (e.g. a lone byte token).</summary>
    public string TokenPiece(int id)
    {
        var bytes = Piece(CheckedId(id), renderSpecial: true);
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException) { return Vocabulary.Tokens[id]; }
    }

    /// <summary>The bytes this token contributes to decoded text.</summary>
    public ReadOnlySpan<byte> PieceBytes(int id, bool renderSpecial = false)
        => Piece(CheckedId(id), renderSpecial);

    protected int CheckedId(int id) => (uint)id < (uint)VocabSize ? id
        : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{VocabSize - 1})");

    /// <summary>Whether the first piece of a decoded text loses its leading space (SPM dummy prefix).</summary>
    protected internal virtual bool StripsLeadingSpace => false;

    /// <summary>Text → token ids. <paramref name="addSpecial"/>: add BOS/EOS as the vocabulary asks (add_bos_token /
    /// add_eos_token). <paramref name="parseSpecial"/>: control tokens written in the text ("&lt;|im_start|&gt;")
    /// become their id instead of being tokenized as plain text.</summary>
    public int[] Encode(string text, bool addSpecial = false, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (addSpecial && AddBos && Bos is int bos) output.Add(bos);
        bool previousWasSpecial = true; // start of text counts as "after a special token" (SPM space prefix)
        foreach (var f in Partition(text, parseSpecial))
        {
            if (f.Token >= 0) { output.Add(f.Token); previousWasSpecial = true; continue; }
            EncodeText(text.AsSpan(f.Start, f.Length), previousWasSpecial, output);
            previousWasSpecial = false;
        }
        if (addSpecial && AddEos && Eos is int eos) output.Add(eos);
        return output.ToArray();
    }

    /// <summary>Tokenizes one fragment of plain text (no special tokens inside) and appends the ids.</summary>
    protected abstract void EncodeText(ReadOnlySpan<char> text, bool afterSpecial, List<int> output);

    /// <summary>The bytes a NORMAL/BYTE token decodes to.</summary>
    protected abstract byte[] TokenBytes(int id);

    private readonly record struct Fragment(int Token, int Start, int Length);

    /// <summary>Splits text into plain-text fragments and special-token fragments (llama.cpp tokenizer_st_partition).</summary>
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<Fragment>();
        if (text.Length == 0) return fragments;
        fragments.Add(new Fragment(-1, 0, text.Length));
        var tokens = Vocabulary.Tokens;
        var next = new List<Fragment>();
        foreach (var id in _specialIds)
        {
            if (!parseSpecial && Types[id] is TokenType.Control or TokenType.Unknown) continue;
            var special = tokens[id];
            bool lstrip = Vocabulary.LStrip?.Contains(id) == true, rstrip = Vocabulary.RStrip?.Contains(id) == true;
            bool changed = false;
            next.Clear();
            foreach (var f in fragments)
            {
                if (f.Token >= 0) { next.Add(f); continue; }
                int pos = f.Start, end = f.Start + f.Length;
                while (pos < end)
                {
                    int at = text.AsSpan(pos, end - pos).IndexOf(special.AsSpan(), StringComparison.Ordinal);
                    if (at < 0) break;
                    at += pos;
                    int leftEnd = at;
                    if (lstrip) while (leftEnd > pos && char.IsWhiteSpace(text[leftEnd - 1])) leftEnd--;
                    if (leftEnd > pos) next.Add(new Fragment(-1, pos, leftEnd - pos));
                    next.Add(new Fragment(id, at, special.Length));
                    pos = at + special.Length;
                    if (rstrip) while (pos < end && char.IsWhiteSpace(text[pos])) pos++;
                    changed = true;
                }
                if (pos < end) next.Add(new Fragment(-1, pos, end - pos));
            }
            if (changed) (fragments, next) = (next, fragments);
        }
        return fragments;
    }

    /// <summary>Token ids → text. Control tokens (BOS, EOS, ...) produce nothing unless <paramref name="renderSpecial"/>.
    /// For SPM vocabularies with a dummy space prefix, the leading space of the first piece is removed
    /// (so Decode(Encode(s)) == s).</summary>
    public string Decode(ReadOnlySpan<int> ids, bool renderSpecial = false)
    {
        var decoder = CreateDecoder(renderSpecial, atTextStart: true);
        var sb = new StringBuilder();
        foreach (var id in ids) sb.Append(decoder.Append(id));
        sb.Append(decoder.Flush());
        return sb.ToString();
    }

    /// <summary>A stateful decoder for streaming generation: each Append returns the text that became complete
    /// (a UTF-8 character split across tokens is held until whole). <paramref name="atTextStart"/>: the first
    /// token starts the text (SPM: drop the dummy-prefix space) — false when continuing after a prompt.</summary>
    public StreamingDecoder CreateDecoder(bool renderSpecial = false, bool atTextStart = false)
        => new(this, renderSpecial, atTextStart && StripsLeadingSpace);
}
