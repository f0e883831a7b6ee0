// Owns: the tensors of an RWKV v5.2 / v6 / v7 model (names as RwkvReader maps rwkv.cpp keys, see its header), with
// every shape checked at load. Matrices stay zero-copy TensorViews (any kernel type, e.g. Q5_0); per-channel vectors
// (norms, token-shift mixes, decays, bonuses) become float[] once.
// Layout facts (rwkv.cpp convert_pytorch_to_ggml.py + rwkv_graph.inc): v5.2 time_decay is stored already as
// exp(-exp(decay)) with shape [1, N, H]; time_faaaa (bonus u) is [1, N, H]; v6 time_maa_w1 is [C, 5·D] (its output
// row s·D + d feeds the mix s of w, k, v, r, g), time_maa_w2 is [D, C, 5] (slice s is a [D, C] matrix);
// v6 time_decay is [C] (raw, decay = exp(-exp(w))); v7 x_rwkvag is [C, 1, 6] (mixes of r, w, k, v, a, g);
// v7 w0/a0/v0/k_k/k_a are [C], r_k is [N, H]; LoRA matrices are ggml [in, out].
using Engine.Formats;
using Engine.Tensors;

namespace Engine.Model;

/// <summary>One RWKV block's weights; members a version does not use are null.</summary>
public sealed class RwkvLayerWeights
{
    public required float[] Ln1Weight, Ln1Bias, Ln2Weight, Ln2Bias;           // [C]
    public required TensorView Receptance, Key, Value, Output;                // [C, C]
    public required float[] LnXWeight, LnXBias;                                // [C] per-head group norm
    public TensorView? Gate;                                                   // v5.2/v6 [C, C]
    // v5.2 token shift (lerp) and decay
    public float[]? MixK, MixV, MixR, MixG;                                    // [C]
    public float[]? Decay;                                                     // v5.2: [H·N] multiplicative decay; v6: [C] raw
    public float[]? Bonus;                                                     // v5.2/v6 time_faaaa [H·N]
    // v6 data-dependent token shift and decay (LoRA)
    public float[]? MaaX, MaaW, MaaK, MaaV, MaaR, MaaG;                        // [C]
    public TensorView? MaaW1;                                                  // [C, 5·D]
    public TensorView[]? MaaW2;                                                // 5 × [D, C]
    public TensorView? DecayW1, DecayW2;                                       // [C, D'], [D', C]
    // v7
    public float[]? XMix;                                                      // [6, C] r, w, k, v, a, g
    public float[]? W0, A0, V0, KK, KA, RK;                                    // [C]
    public TensorView? W1, W2, A1, A2, V1, V2, G1, G2;                         // LoRA [C, d] / [d, C]
    // channel mix
    public float[]? FfnMixK, FfnMixR;                                          // v5.2 time_mix_k/r, v6 time_maa_k/r, v7 x_k (FfnMixK)
    public required TensorView FfnKey, FfnValue;                               // [C, F], [F, C]
    public TensorView? FfnReceptance;                                          // v5.2/v6 [C, C]
}

/// <summary>All weights of an RWKV model.</summary>
public sealed class RwkvWeights
{
    public required int Version { get; init; }                                 // 5, 6 or 7
    public required int EmbeddingLength { get; init; }                         // C
    public required int HeadCount { get; init; }                               // H
    public required int HeadSize { get; init; }                                // N
    public required int FeedForwardLength { get; init; }                       // F
    public required int VocabSize { get; init; }
    public required TensorView TokenEmbedding { get; init; }                   // [C, vocab]
    public required float[] Ln0Weight { get; init; }                           // [C]
    public required float[] Ln0Bias { get; init; }                             // [C]
    public required RwkvLayerWeights[] Layers { get; init; }
    public required float[] OutputNormWeight { get; init; }                    // [C]
    public required float[] OutputNormBias { get; init; }                      // [C]
    public required TensorView Output { get; init; }                           // [C, vocab]

    public static RwkvWeights Load(ModelFile file)
    {
        string arch = file.Architecture ?? throw new ModelFormatException(file.Path, -1, "metadata 'general.architecture' is missing");
        int version = arch switch
        {
            "rwkv5" => 5, "rwkv6" => 6, "rwkv7" => 7,
            _ => throw new ModelFormatException(file.Path, -1, $"architecture '{arch}' is not an RWKV version this build runs (rwkv5, rwkv6, rwkv7)"),
        };
        if (version == 5 && file.GetInteger("rwkv5.version_minor") is long minor && minor != 2)
            throw new ModelFormatException(file.Path, -1, $"RWKV v5.{minor} is not supported (only v5.2)");
        int Req(string key) => checked((int)(file.GetInteger($"{arch}.{key}")
            ?? throw new ModelFormatException(file.Path, -1, $"required metadata '{arch}.{key}' is missing")));
        int c = Req("embedding_length"), layers = Req("block_count"), n = Req("wkv.head_size"), h = Req("attention.head_count");
        if (n * h != c) throw new ModelFormatException(file.Path, -1, $"head_size {n} × head_count {h} ≠ embedding_length {c}");
        var emb = file.GetTensor("token_embd.weight");
        if (emb.Shape.Length != 2 || emb.Shape[0] != c)
            throw new ModelFormatException(file.Path, -1, $"token_embd.weight has shape [{string.Join(", ", emb.Shape)}], expected [{c}, vocab]");
        int vocab = checked((int)emb.Shape[1]);
        int ff = checked((int)file.GetTensor("blk.0.channel_mix_key.weight").Shape[^1]);

        float[] V(string name, int len = 0) => WeightLoader.Vector(file, name, len == 0 ? c : len);
        TensorView M(string name, long cols, long rows) => WeightLoader.Matrix(file, name, cols, rows);
        long LoraDim(string name) => file.GetTensor(name).Shape[1];

        var list = new RwkvLayerWeights[layers];
        for (int l = 0; l < layers; l++)
        {
            string p = $"blk.{l}.";
            string tm = p + "time_mix_", cm = p + "channel_mix_";
            var w = new RwkvLayerWeights
            {
                Ln1Weight = V(p + "attn_norm.weight"), Ln1Bias = V(p + "attn_norm.bias"),
                Ln2Weight = V(p + "attn_norm_2.weight"), Ln2Bias = V(p + "attn_norm_2.bias"),
                Receptance = M(tm + "receptance.weight", c, c), Key = M(tm + "key.weight", c, c),
                Value = M(tm + "value.weight", c, c), Output = M(tm + "output.weight", c, c),
                LnXWeight = V(tm + "ln_x.weight"), LnXBias = V(tm + "ln_x.bias"),
                FfnKey = M(cm + "key.weight", c, ff), FfnValue = M(cm + "value.weight", ff, c),
            };
            switch (version)
            {
                case 5:
                    w.Gate = M(tm + "gate.weight", c, c);
                    w.MixK = V(tm + "time_mix_k"); w.MixV = V(tm + "time_mix_v"); w.MixR = V(tm + "time_mix_r"); w.MixG = V(tm + "time_mix_g");
                    w.Decay = V(tm + "time_decay"); w.Bonus = V(tm + "time_faaaa");
                    w.FfnMixK = V(cm + "time_mix_k"); w.FfnMixR = V(cm + "time_mix_r");
                    w.FfnReceptance = M(cm + "receptance.weight", c, c);
                    break;
                case 6:
                {
                    w.Gate = M(tm + "gate.weight", c, c);
                    w.MaaX = V(tm + "time_maa_x"); w.MaaW = V(tm + "time_maa_w"); w.MaaK = V(tm + "time_maa_k");
                    w.MaaV = V(tm + "time_maa_v"); w.MaaR = V(tm + "time_maa_r"); w.MaaG = V(tm + "time_maa_g");
                    long d5 = LoraDim(tm + "time_maa_w1");
                    if (d5 % 5 != 0) throw new ModelFormatException(file.Path, -1, $"{tm}time_maa_w1 has {d5} outputs, not 5 × D");
                    long d = d5 / 5;
                    w.MaaW1 = M(tm + "time_maa_w1", c, d5);
                    w.MaaW2 = SplitLast(file, tm + "time_maa_w2", [d, c, 5]);
                    long dd = LoraDim(tm + "time_decay_w1");
                    w.DecayW1 = M(tm + "time_decay_w1", c, dd);
                    w.DecayW2 = M(tm + "time_decay_w2", dd, c);
                    w.Decay = V(tm + "time_decay"); w.Bonus = V(tm + "time_faaaa");
                    w.FfnMixK = V(cm + "time_maa_k"); w.FfnMixR = V(cm + "time_maa_r");
                    w.FfnReceptance = M(cm + "receptance.weight", c, c);
                    break;
                }
                case 7:
                {
                    w.XMix = V(tm + "x_rwkvag", 6 * c);
                    w.W0 = V(tm + "w0"); w.A0 = V(tm + "a0"); w.KK = V(tm + "k_k"); w.KA = V(tm + "k_a"); w.RK = V(tm + "r_k");
                    long dw = LoraDim(tm + "w1"), da = LoraDim(tm + "a1"), dg = LoraDim(tm + "g1");
                    w.W1 = M(tm + "w1", c, dw); w.W2 = M(tm + "w2", dw, c);
                    w.A1 = M(tm + "a1", c, da); w.A2 = M(tm + "a2", da, c);
                    w.G1 = M(tm + "g1", c, dg); w.G2 = M(tm + "g2", dg, c);
                    if (l > 0)
                    {
                        long dv = LoraDim(tm + "v1");
                        w.V0 = V(tm + "v0"); w.V1 = M(tm + "v1", c, dv); w.V2 = M(tm + "v2", dv, c);
                    }
                    w.FfnMixK = V(cm + "x_k");
                    break;
                }
            }
            list[l] = w;
        }
        return new RwkvWeights
        {
            Version = version, EmbeddingLength = c, HeadCount = h, HeadSize = n, FeedForwardLength = ff, VocabSize = vocab,
            TokenEmbedding = emb, Ln0Weight = V("token_embd_norm.weight"), Ln0Bias = V("token_embd_norm.bias"),
            Layers = list, OutputNormWeight = V("output_norm.weight"), OutputNormBias = V("output_norm.bias"),
            Output = M("output.weight", c, vocab),
        };
    }

    /// <summary>Views of the matrices [shape[0], shape[1]] stacked along the last dimension of a 3-D tensor.</summary>
    private static TensorView[] SplitLast(ModelFile file, string name, long[] shape)
    {
        var t = file.GetTensor(name);
        if (t.Shape.Length != 3 || t.Shape[0] != shape[0] || t.Shape[1] != shape[1] || t.Shape[2] != shape[2])
            throw new ModelFormatException(file.Path, -1, $"tensor '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]");
        if (!t.Type.IsSupportedWeight())
            throw new ModelFormatException(file.Path, -1, $"tensor '{name}' has type {t.Type}, which the kernels cannot compute with");
        long bytes = t.Type.ByteCount(shape[0] * shape[1]);
        var parts = new TensorView[shape[2]];
        for (int s = 0; s < parts.Length; s++)
            parts[s] = new TensorView($"{name}[{s}]", t.Type, [shape[0], shape[1]], t.Data + (nint)(s * bytes), bytes);
        return parts;
    }
}
