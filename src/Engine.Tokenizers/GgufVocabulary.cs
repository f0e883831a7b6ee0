// Owns: mapping GGUF-style tokenizer metadata (`tokenizer.ggml.*`, as every Engine.Formats reader produces it:
// GGUF, llama2.c tokenizer.bin) to a Vocabulary.
// Defaults follow llama.cpp's vocab loader: SPM → bos 1, eos 2, unk 0, add_bos true, add_space_prefix true;
// BPE → no pre name means "default", add_bos false; the "llama3"/"llama-bpe" family sets ignore_merges and add_bos.
// Phi-3 (general.name contains phi-3/phi3): special tokens strip whitespace to their right, as llama.cpp does.
using Engine.Formats;

namespace Engine.Tokenizers;

public static class GgufVocabulary
{
    private static readonly HashSet<string> IgnoreMergesFamilies = new(StringComparer.Ordinal) { "llama3", "llama-v3", "llama-bpe" };

    /// <summary>The vocabulary described by a model file's tokenizer metadata; ModelFormatException when it is missing or malformed.</summary>
    public static Vocabulary FromModelFile(ModelFile file)
    {
        string path = file.Path;
        string model = file.GetString(TokenizerKeys.Model)
            ?? throw new ModelFormatException(path, -1, $"no tokenizer metadata ('{TokenizerKeys.Model}' is missing)");
        var kind = model switch
        {
            "llama" => TokenizerModel.SentencePiece,
            "gpt2" => TokenizerModel.ByteLevelBpe,
            _ => throw new ModelFormatException(path, -1, $"tokenizer model '{model}' is not supported (supported: llama, gpt2)"),
        };
        var tokens = file.Metadata.TryGetValue(TokenizerKeys.Tokens, out var t) && t is string[] ts ? ts
            : throw new ModelFormatException(path, -1, $"'{TokenizerKeys.Tokens}' is missing or not a string array");
        float[]? scores = ToFloats(file, TokenizerKeys.Scores);
        int[]? typeNumbers = ToInts(file, TokenizerKeys.TokenType);
        if (scores != null && scores.Length != tokens.Length)
            throw new ModelFormatException(path, -1, $"{scores.Length} scores for {tokens.Length} tokens");
        if (typeNumbers != null && typeNumbers.Length != tokens.Length)
            throw new ModelFormatException(path, -1, $"{typeNumbers.Length} token types for {tokens.Length} tokens");
        var types = typeNumbers?.Select(n => n is >= 0 and <= 6 ? (TokenType)n : TokenType.Undefined).ToArray();
        string[]? merges = file.Metadata.TryGetValue(TokenizerKeys.Merges, out var m) ? m as string[]
            ?? throw new ModelFormatException(path, -1, $"'{TokenizerKeys.Merges}' is not a string array") : null;
        if (kind == TokenizerModel.ByteLevelBpe && merges == null)
            throw new ModelFormatException(path, -1, $"byte-level BPE vocabulary without '{TokenizerKeys.Merges}'");

        bool spm = kind == TokenizerModel.SentencePiece;
        int? Id(string key, int? fallback)
        {
            long? v = file.GetInteger(key);
            if (v is null) return fallback;
            if (v < 0 || v >= tokens.Length) return v == -1 || v == uint.MaxValue ? null
                : throw new ModelFormatException(path, -1, $"'{key}' = {v} is outside the vocabulary (0..{tokens.Length - 1})");
            return (int)v;
        }
        bool Flag(string key, bool fallback) => file.Metadata.TryGetValue(key, out var b) && b is bool bb ? bb : fallback;

        var extraEog = new List<int>();
        foreach (var key in new[] { "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" })
            if (Id(key, null) is int e) extraEog.Add(e);

        string? pre = file.GetString(TokenizerKeys.Pre);
        if (!spm)
        {
            pre ??= "default";
            if (!PreTokenizer.IsKnown(pre))
                throw new ModelFormatException(path, -1, $"unknown pre-tokenizer '{pre}' ({TokenizerKeys.Pre}); known: {string.Join(", ", PreTokenizer.KnownNames)}");
        }

        HashSet<int>? rstrip = null;
        string name = file.GetString("general.name") ?? "";
        if (types != null && (name.Contains("phi-3", StringComparison.OrdinalIgnoreCase) || name.Contains("phi3", StringComparison.OrdinalIgnoreCase)))
        {
            rstrip = [];
            for (int i = 0; i < tokens.Length; i++)
                if (types[i] is TokenType.Control or TokenType.UserDefined || tokens[i] == "</s>") rstrip.Add(i);
            foreach (var keep in new[] { "<unk>", "<s>", "<|endoftext|>" })
                for (int i = 0; i < tokens.Length; i++) if (tokens[i] == keep) rstrip.Remove(i);
        }

        return new Vocabulary
        {
            Model = kind,
            Tokens = tokens,
            Scores = scores,
            Types = types,
            Merges = merges,
            Bos = Id(TokenizerKeys.BosId, spm ? 1 : null),
            Eos = Id(TokenizerKeys.EosId, spm ? 2 : null),
            Unk = Id(TokenizerKeys.UnkId, spm ? 0 : null),
            Pad = Id(TokenizerKeys.PadId, null),
            ExtraEog = extraEog,
            AddBos = Flag(TokenizerKeys.AddBos, spm || IgnoreMergesFamilies.Contains(pre ?? "")),
            AddEos = Flag(TokenizerKeys.AddEos, false),
            AddSpacePrefix = Flag("tokenizer.ggml.add_space_prefix", spm),
            IgnoreMerges = !spm && IgnoreMergesFamilies.Contains(pre!),
            PreTokenizer = pre,
            RStrip = rstrip,
            ChatTemplate = file.GetString(TokenizerKeys.ChatTemplate),
            Source = path,
        };
    }

    private static float[]? ToFloats(ModelFile file, string key) => file.Metadata.TryGetValue(key, out var v) ? v switch
    {
        float[] f => f,
        double[] d => d.Select(x => (float)x).ToArray(),
        _ => throw new ModelFormatException(file.Path, -1, $"'{key}' is {v.GetType().Name}, expected a float array"),
    } : null;

    private static int[]? ToInts(ModelFile file, string key) => file.Metadata.TryGetValue(key, out var v) ? v switch
    {
        int[] i => i,
        uint[] u => u.Select(x => (int)Math.Min(x, int.MaxValue)).ToArray(),
        short[] s => s.Select(x => (int)x).ToArray(),
        ushort[] s => s.Select(x => (int)x).ToArray(),
        byte[] b => b.Select(x => (int)x).ToArray(),
        sbyte[] b => b.Select(x => (int)x).ToArray(),
        long[] l => l.Select(x => (int)Math.Clamp(x, int.MinValue, int.MaxValue)).ToArray(),
        _ => throw new ModelFormatException(file.Path, -1, $"'{key}' is {v.GetType().Name}, expected an integer array"),
    } : null;
}
