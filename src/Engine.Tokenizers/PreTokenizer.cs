// Owns: byte-level BPE pre-tokenization — splitting text into "words" before merges, per model family.
// Invariants: the output ranges cover the input exactly, in order, without overlap (unmatched gaps between
// regex matches become words of their own, as llama.cpp's unicode_regex_split keeps them).
// Several regexes apply in sequence, each one splitting every word the previous one produced.
// Regexes run on code points: .NET Regex sees UTF-16, so astral code points (emoji, rare CJK) are replaced by
// one BMP stand-in of the same general category (letter, digit, mark, punctuation, symbol) before matching,
// and match offsets are mapped back. The family regexes are the upstream tokenizers' patterns as llama.cpp
// lists them per `tokenizer.ggml.pre` name (llama-vocab.cpp, llm_tokenizer_bpe); astral ranges in
// deepseek-llm's letter class are dropped (.NET character classes cannot hold them).
using System.Globalization;
using System.Text.RegularExpressions;

namespace Engine.Tokenizers;

public sealed partial class PreTokenizer
{
    private const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private const string Llama3 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string UpperThenLower = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+";
    private const string UpperRun = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*";
    private const string Contraction = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?";
    private const string Tekken = UpperThenLower + "|" + UpperRun + @"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Gpt4o = UpperThenLower + Contraction + "|" + UpperRun + Contraction + @"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string DeepSeek3 = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
    private const string Cjk = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";
    private const string DeepSeekLetters = "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A]+";

    /// <summary>llama.cpp `tokenizer.ggml.pre` names → the regex sequence of that family.</summary>
    private static readonly Dictionary<string, string[]> Families = new(StringComparer.Ordinal)
    {
        ["default"] = [DefaultPunct, Gpt2, @"\p{N}+", "[0-9][0-9][0-9]"],
        ["gpt-2"] = [Gpt2],
        ["gpt2"] = [Gpt2],
        ["mpt"] = [Gpt2],
        ["olmo"] = [Gpt2],
        ["jais"] = [Gpt2],
        ["llama3"] = [Llama3],
        ["llama-v3"] = [Llama3],
        ["llama-bpe"] = [Llama3],
        ["dbrx"] = [Llama3],
        ["smaug-bpe"] = [Llama3],
        ["chatglm-bpe"] = [Llama3],
        ["qwen2"] = [Qwen2],
        ["stablelm2"] = [Qwen2],
        ["deepseek-r1-qwen"] = [Qwen2],
        ["deepseek-llm"] = ["[\r\n]", DeepSeekLetters, "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+", @"\s+\z", Cjk, @"\p{N}+"],
        ["deepseek-coder"] = ["[\r\n]", @"\s?\p{L}+", @"\s?\p{P}+", Cjk, @"\p{N}"],
        ["falcon"] = [FalconPunct, Gpt2, "[0-9][0-9][0-9]"],
        ["starcoder"] = [@"\p{N}", Gpt2],
        ["refact"] = [@"\p{N}", Gpt2],
        ["command-r"] = [@"\p{N}", Gpt2],
        ["smollm"] = [@"\p{N}", Gpt2],
        ["codeshell"] = [@"\p{N}", Gpt2],
        ["exaone"] = [@"\p{N}", Gpt2],
        ["tekken"] = [Tekken],
        ["gpt-4o"] = [Gpt4o],
        ["llama4"] = [Gpt4o],
        ["deepseek-v3"] = [@"\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+", DeepSeek3],
        ["poro-chat"] = [@" ?[^(\s|.,!?…。，、।۔،)]+"],
        ["bloom"] = [@" ?[^(\s|.,!?…。，、।۔،)]+"],
        ["gpt3-finnish"] = [@" ?[^(\s|.,!?…。，、।۔،)]+"],
        ["viking"] = [@" ?[^(\s|.,!?…。，、।۔،)]+", @"\p{N}"],
    };

    private readonly Regex[] _regexes;

    private PreTokenizer(string name, IEnumerable<string> patterns)
    {
        Name = name;
        _regexes = patterns.Select(Create).ToArray();
    }

    private const string DefaultPunct = @"[\p{P}\$\+<=>\^~\|]+";
    private const string FalconPunct = @"[\p{P}\$\+<=>\^~\|`]+";

    [GeneratedRegex(Gpt2, RegexOptions.CultureInvariant)] private static partial Regex Gpt2Regex();
    [GeneratedRegex(Llama3, RegexOptions.CultureInvariant)] private static partial Regex Llama3Regex();
    [GeneratedRegex(Qwen2, RegexOptions.CultureInvariant)] private static partial Regex Qwen2Regex();
    [GeneratedRegex(DefaultPunct, RegexOptions.CultureInvariant)] private static partial Regex DefaultPunctRegex();
    [GeneratedRegex(FalconPunct, RegexOptions.CultureInvariant)] private static partial Regex FalconPunctRegex();
    [GeneratedRegex(@"\p{N}", RegexOptions.CultureInvariant)] private static partial Regex DigitRegex();
    [GeneratedRegex(@"\p{N}+", RegexOptions.CultureInvariant)] private static partial Regex DigitsRegex();
    [GeneratedRegex("[0-9][0-9][0-9]", RegexOptions.CultureInvariant)] private static partial Regex ThreeDigitsRegex();

    /// <summary>Source-generated regexes for the common patterns (no run-time compile); others compile on first use.</summary>
    private static Regex Create(string pattern) => pattern switch
    {
        Gpt2 => Gpt2Regex(),
        Llama3 => Llama3Regex(),
        Qwen2 => Qwen2Regex(),
        DefaultPunct => DefaultPunctRegex(),
        FalconPunct => FalconPunctRegex(),
        @"\p{N}" => DigitRegex(),
        @"\p{N}+" => DigitsRegex(),
        "[0-9][0-9][0-9]" => ThreeDigitsRegex(),
        _ => new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant),
    };

    /// <summary>The family name (llama.cpp pre-tokenizer name) or "custom".</summary>
    public string Name { get; }

    public static IReadOnlyCollection<string> KnownNames => Families.Keys;

    /// <summary>True when <paramref name="name"/> is a pre-tokenizer family this engine implements.</summary>
    public static bool IsKnown(string name) => Families.ContainsKey(name);

    /// <summary>The pre-tokenizer for a llama.cpp `tokenizer.ggml.pre` name; throws for names it does not know.</summary>
    public static PreTokenizer ForName(string name) => Families.TryGetValue(name, out var p)
        ? new PreTokenizer(name, p)
        : throw new NotSupportedException($"unknown pre-tokenizer '{name}' (known: {string.Join(", ", Families.Keys)})");

    /// <summary>A pre-tokenizer from explicit regexes (tokenizer.json Split patterns), applied in order.
    /// A pattern equal to a known family's pattern takes that family's name.</summary>
    public static PreTokenizer FromPatterns(IReadOnlyList<string> patterns)
    {
        var translated = patterns.Select(Translate).ToArray();
        foreach (var (name, fam) in Families)
            if (fam.SequenceEqual(translated)) return new PreTokenizer(name, fam);
        return new PreTokenizer("custom", translated);
    }

    /// <summary>Hugging Face (Rust regex / Oniguruma) pattern → .NET: the llama3-style case-insensitive contraction
    /// group is rewritten to explicit classes; a trailing `$` becomes `\z` (end of word, not before a newline).</summary>
    private static string Translate(string pattern)
    {
        pattern = pattern.Replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])");
        if (pattern.EndsWith('$') && !pattern.EndsWith(@"\$")) pattern = pattern[..^1] + @"\z";
        return pattern;
    }

    /// <summary>Splits <paramref name="text"/> into words; appends (start, length) UTF-16 ranges to <paramref name="words"/>.</summary>
    public void Split(string text, List<(int Start, int Length)> words)
    {
        if (text.Length == 0) return;
        // Shadow string: one char per code point; map[i] = UTF-16 offset of code point i (map[n] = text.Length).
        string shadow = text;
        int[]? map = null;
        if (text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF')) (shadow, map) = BuildShadow(text);

        var current = new List<(int Start, int Length)> { (0, shadow.Length) };
        var next = new List<(int Start, int Length)>();
        foreach (var regex in _regexes)
        {
            next.Clear();
            foreach (var (start, length) in current)
            {
                int pos = start;
                for (var m = regex.Match(shadow, start, length); m.Success; m = m.NextMatch())
                {
                    if (m.Length == 0) continue;
                    if (m.Index > pos) next.Add((pos, m.Index - pos));
                    next.Add((m.Index, m.Length));
                    pos = m.Index + m.Length;
                }
                if (pos < start + length) next.Add((pos, start + length - pos));
            }
            (current, next) = (next, current);
        }

        foreach (var (s, l) in current)
            words.Add(map == null ? (s, l) : (map[s], map[s + l] - map[s]));
    }

    private static (string Shadow, int[] Map) BuildShadow(string text)
    {
        var chars = new char[text.Length];
        var map = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length; n++)
        {
            map[n] = i;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                chars[n] = StandIn(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1])));
                i += 2;
            }
            else
            {
                // A lone surrogate becomes U+FFFD when encoded to UTF-8; it is a symbol (So).
                chars[n] = char.IsSurrogate(text[i]) ? '\uFFFD' : text[i];
                i += 1;
            }
        }
        map[n] = text.Length;
        return (new string(chars, 0, n), map);
    }

    /// <summary>A BMP character of the same general category (letters keep their case class; the cased stand-ins lie
    /// in deepseek-llm's letter class, like the astral letters that class lists).</summary>
    private static char StandIn(UnicodeCategory c) => c switch
    {
        UnicodeCategory.UppercaseLetter => '\u0181',                                             // Ɓ (Lu)
        UnicodeCategory.LowercaseLetter => '\u0180',                                             // ƀ (Ll)
        UnicodeCategory.TitlecaseLetter => '\u01C5',                                             // ǅ (Lt)
        UnicodeCategory.ModifierLetter => '\u02B0',                                              // ʰ (Lm)
        UnicodeCategory.OtherLetter => '\u01C2',                                                 // ǂ (Lo)
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => '\u00B2', // ² (No)
        UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => '\u0300', // (Mn)
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
            or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation => '\u00A1', // ¡ (Po)
        UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
            or UnicodeCategory.OtherSymbol => '\u00A6',                                          // ¦ (So)
        _ => '\uE000',                                                                           // private use (Co)
    };
}
