// Owns: writing any readable model (llama2.c checkpoint, safetensors/HF folder, GGUF) as GGUF v3 with its metadata
// (tokenizer metadata merged in) and tensors unchanged — what `engine convert` does.
// Invariants: the output is written to OUT.tmp and moved into place only when complete (the temp file is deleted on
// failure); the input is never overwritten.
namespace Engine.Runtime.Tools;

using Engine.Formats;
using Engine.Formats.Gguf;

/// <summary>What a conversion wrote.</summary>
/// <param name="TensorCount">Tensors copied bit for bit.</param>
/// <param name="MetadataCount">Metadata keys written.</param>
/// <param name="Bytes">Size of the written file.</param>
/// <param name="HasTokenizer">Whether tokenizer metadata was embedded.</param>
public sealed record ConversionResult(int TensorCount, int MetadataCount, long Bytes, bool HasTokenizer);

public static class ModelConversion
{
    /// <summary>Writes <paramref name="modelPath"/> (with <paramref name="tokenizerPath"/>'s tokenizer metadata, when given)
    /// as GGUF to <paramref name="outPath"/>.</summary>
    public static ConversionResult ToGguf(string modelPath, string? tokenizerPath, string outPath)
    {
        string tmp = outPath + ".tmp";
        try
        {
            if (Path.GetFullPath(outPath) == Path.GetFullPath(modelPath))
                throw new IOException("--out must differ from --model");
            using var m = ModelFiles.Open(modelPath, tokenizerPath);
            if (m.Tensors.Count == 0) throw new ModelFormatException(modelPath, -1, "has no tensors: nothing to convert");
            var metadata = m.Metadata.Where(kv => kv.Key != TokenizerKeys.TokenizerJsonPath).ToList();
            var w = new GgufWriter();
            foreach (var (k, v) in metadata) if (k != GgufReader.AlignmentKey) w.AddMetadata(k, v);
            foreach (var t in m.Tensors) w.AddTensor(t);
            w.Write(tmp);
            File.Move(tmp, outPath, overwrite: true);
            return new ConversionResult(m.Tensors.Count, metadata.Count, new FileInfo(outPath).Length, m.GetArray<string>(TokenizerKeys.Tokens) != null);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
