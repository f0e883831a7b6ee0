// Owns: the plain, format-neutral description of a tokenizer vocabulary that every source maps to
// (GGUF `tokenizer.ggml.*` metadata, Hugging Face tokenizer.json, llama2.c tokenizer.bin).
// Invariants: Tokens[i] is the text of id i exactly as GGUF stores it (SPM: spaces as U+2581, byte tokens "<0xNN>";
// byte-level BPE: GPT-2 byte→unicode mapped text; added/special tokens: their literal text).
// Scores/Types have Tokens.Length entries when present; TokenType is Engine.Formats.TokenType (GGUF numbering). Merges are "left right" in rank order (BPE only).
using Engine.Formats;

namespace Engine.Tokenizers;

/// <summary>The tokenization algorithms the engine implements.</summary>
public enum TokenizerModel
{
    /// <summary>SentencePiece-style BPE driven by token scores (GGUF model "llama", llama2.c tokenizers).</summary>
    SentencePiece,
    /// <summary>Byte-level BPE driven by merge ranks (GGUF model "gpt2", HF tokenizer.json BPE).</summary>
    ByteLevelBpe,
    /// <summary>Token id = byte value (vocabulary of exactly 256; rwkv.cpp models): see <see cref="ByteTokenizer"/>.</summary>
    Bytes,
}

/// <summary>Everything needed to build a <see cref="Tokenizer"/>; sources fill what they know.</summary>
public sealed record Vocabulary
{
    public required TokenizerModel Model { get; init; }
    public required string[] Tokens { get; init; }
    /// <summary>SPM merge priority (higher merges first). Null → all 0.</summary>
    public float[]? Scores { get; init; }
    /// <summary>Null → Normal for every token (BYTE for "&lt;0xNN&gt;" pieces in SPM vocabularies).</summary>
    public TokenType[]? Types { get; init; }
    /// <summary>Byte-level BPE merges "left right", rank = index.</summary>
    public string[]? Merges { get; init; }
    public int? Bos { get; init; }
    public int? Eos { get; init; }
    public int? Unk { get; init; }
    public int? Pad { get; init; }
    /// <summary>Extra end-of-generation ids (EOT, EOM, ...); EOS is always one. Known EOG texts are added automatically.</summary>
    public IReadOnlyList<int>? ExtraEog { get; init; }
    public bool AddBos { get; init; }
    public bool AddEos { get; init; }
    /// <summary>SPM: prepend "▁" to the text (llama.cpp `tokenizer.ggml.add_space_prefix`, default true).</summary>
    public bool AddSpacePrefix { get; init; } = true;
    /// <summary>Byte-level BPE: a whole pre-token that is already a token is emitted without merging (Llama 3).</summary>
    public bool IgnoreMerges { get; init; }
    /// <summary>Byte-level BPE pre-tokenizer: a llama.cpp `tokenizer.ggml.pre` name ("gpt-2", "llama-bpe", "qwen2", ...).</summary>
    public string? PreTokenizer { get; init; }
    /// <summary>Explicit split regexes (from tokenizer.json) applied in sequence; overrides <see cref="PreTokenizer"/>.</summary>
    public IReadOnlyList<string>? PreTokenizerPatterns { get; init; }
    /// <summary>Ids whose surrounding whitespace is stripped when they are matched as special tokens.</summary>
    public IReadOnlySet<int>? LStrip { get; init; }
    public IReadOnlySet<int>? RStrip { get; init; }
    /// <summary>The Jinja chat template text, if the source has one (recognised, not executed).</summary>
    public string? ChatTemplate { get; init; }
    /// <summary>Where this vocabulary came from (for error messages).</summary>
    public string Source { get; init; } = "<vocabulary>";
}
