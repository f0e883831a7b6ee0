// Owns: reading llama.cpp's tokenizer test vectors (models/vocab/*.inp / *.out) exactly as test-tokenizer-0 does.
// Format: .inp = UTF-8 test strings, each followed by "\n__ggml_vocab_test__\n" (the newline before the separator
// is not part of the string); .out = one line per string, token ids separated by spaces (no BOS).
using System.Text;

namespace Engine.Tokenizers.Tests;

public static class VocabTestVectors
{
    private const string Separator = "\n__ggml_vocab_test__\n";

    public static List<(string Text, int[] Ids)> Read(string inpPath, string outPath)
    {
        var strict = new UTF8Encoding(false, true);
        var inp = strict.GetString(File.ReadAllBytes(inpPath));
        var texts = inp.Split(Separator);
        Assert.That(texts[^1], Is.Empty, "the .inp file ends with a separator");
        var lines = strict.GetString(File.ReadAllBytes(outPath)).Split('\n');
        Assert.That(lines[^1], Is.Empty, "the .out file ends with a newline");
        Assert.That(lines.Length, Is.EqualTo(texts.Length), "one .out line per .inp string");
        var cases = new List<(string, int[])>();
        for (int i = 0; i < texts.Length - 1; i++)
            cases.Add((texts[i], lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()));
        return cases;
    }
}
