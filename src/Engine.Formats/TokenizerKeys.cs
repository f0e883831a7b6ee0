// Owns: the GGUF tokenizer metadata key names and token-type ids every reader writes (so all formats agree).
// Source: GGUF spec / llama.cpp `llama_token_type` values (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6).
namespace Engine.Formats;

public static class TokenizerKeys
{
    public const string Model = "tokenizer.ggml.model";            // string: "llama" (SPM), "gpt2" (byte-level BPE), ...
    public const string Pre = "tokenizer.ggml.pre";                // string: pre-tokenizer name (BPE only)
    public const string Tokens = "tokenizer.ggml.tokens";          // string[]
    public const string Scores = "tokenizer.ggml.scores";          // float[]
    public const string TokenType = "tokenizer.ggml.token_type";   // int[] of TokenType values
    public const string Merges = "tokenizer.ggml.merges";          // string[]
    public const string BosId = "tokenizer.ggml.bos_token_id";     // uint
    public const string EosId = "tokenizer.ggml.eos_token_id";     // uint
    public const string UnkId = "tokenizer.ggml.unknown_token_id"; // uint
    public const string PadId = "tokenizer.ggml.padding_token_id"; // uint
    public const string AddBos = "tokenizer.ggml.add_bos_token";   // bool
    public const string AddEos = "tokenizer.ggml.add_eos_token";   // bool
    public const string ChatTemplate = "tokenizer.chat_template";  // string
    /// <summary>Engine's own key: path of a Hugging Face tokenizer.json found beside a safetensors model.</summary>
    public const string TokenizerJsonPath = "engine.tokenizer_json_path";
}

/// <summary>GGUF token types (values of tokenizer.ggml.token_type).</summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}
