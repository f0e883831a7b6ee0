// Owns: the SentencePiece-style tokenizer.json path (Llama 2 / Mistral / TinyLlama Hugging Face folders).
// There is no such file in shared/, so the test writes one the way Hugging Face's LlamaConverter does, from the
// llama-spm GGUF's vocabulary and scores (merges = every split of a piece into two pieces, ordered by the piece's
// score), then checks llama.cpp's llama-spm vectors — expected ids from llama.cpp, not from this code.
using System.Text.Json;
using Engine.Formats;

namespace Engine.Tokenizers.Tests;

public class HfSentencePieceJsonTests
{
    [Test]
    public void SentencePieceStyleTokenizerJsonReproducesLlamaSpmVectors()
    {
        using var gguf = ModelFiles.Open(SharedData.Get("models/vocab/ggml-vocab-llama-spm.gguf"));
        var tokens = gguf.GetArray<string>(TokenizerKeys.Tokens)!;
        var scores = gguf.GetArray<float>(TokenizerKeys.Scores)!;
        var types = gguf.GetArray<int>(TokenizerKeys.TokenType)!;
        var ids = new Dictionary<string, int>();
        for (int i = 0; i < tokens.Length; i++) ids[tokens[i]] = i;
        var merges = new List<(float Score, int Id, int LeftId, string Merge)>();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] != 1) continue;
            var t = tokens[i];
            for (int k = 1; k < t.Length; k++)
            {
                if (char.IsLowSurrogate(t[k])) continue;
                if (ids.TryGetValue(t[..k], out var l) && ids.TryGetValue(t[k..], out _)) merges.Add((scores[i], i, l, t[..k] + " " + t[k..]));
            }
        }
        var ordered = merges.OrderByDescending(m => m.Score).ThenBy(m => m.Id).ThenBy(m => m.LeftId).Select(m => m.Merge).ToArray();

        var dir = Path.Combine(Path.GetTempPath(), $"engine-hf-spm-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            var json = new Dictionary<string, object?>
            {
                ["version"] = "1.0",
                ["added_tokens"] = new[] { 0, 1, 2 }.Select(i => new Dictionary<string, object> { ["id"] = i, ["content"] = tokens[i], ["special"] = true }).ToArray(),
                ["normalizer"] = new Dictionary<string, object>
                {
                    ["type"] = "Sequence",
                    ["normalizers"] = new object[]
                    {
                        new Dictionary<string, object> { ["type"] = "Prepend", ["prepend"] = "▁" },
                        new Dictionary<string, object> { ["type"] = "Replace", ["pattern"] = new Dictionary<string, string> { ["String"] = " " }, ["content"] = "▁" },
                    },
                },
                ["pre_tokenizer"] = null,
                ["model"] = new Dictionary<string, object>
                {
                    ["type"] = "BPE", ["unk_token"] = "<unk>", ["byte_fallback"] = true, ["fuse_unk"] = true,
                    ["vocab"] = Enumerable.Range(0, tokens.Length).ToDictionary(i => tokens[i], i => i),
                    ["merges"] = ordered,
                },
            };
            var path = Path.Combine(dir, "tokenizer.json");
            File.WriteAllText(path, JsonSerializer.Serialize(json));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_bos_token\": true}");

            var tok = Tokenizer.Load(path);
            Assert.That(tok.Model, Is.EqualTo(TokenizerModel.SentencePiece));
            Assert.That((tok.Bos, tok.Eos, tok.AddBos), Is.EqualTo(((int?)1, (int?)2, true)));
            var cases = VocabTestVectors.Read(SharedData.Get("models/vocab/ggml-vocab-llama-spm.gguf.inp"), SharedData.Get("models/vocab/ggml-vocab-llama-spm.gguf.out"));
            var failures = cases.Where(c => !tok.Encode(c.Text).SequenceEqual(c.Ids)).Select(c => VocabVectorTests.Escape(c.Text)).ToList();
            TestContext.Out.WriteLine($"SentencePiece-style tokenizer.json ({ordered.Length} merges) vs llama-spm vectors: {cases.Count - failures.Count}/{cases.Count}");
            Assert.That(failures, Is.Empty);
        }
        finally { Directory.Delete(dir, true); }
    }
}
