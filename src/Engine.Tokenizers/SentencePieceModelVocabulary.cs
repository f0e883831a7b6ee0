// Owns: reading a SentencePiece ModelProto (`tokenizer.model`, protobuf) into a Vocabulary for the SPM tokenizer.
// Fields read (sentencepiece_model.proto): ModelProto { 1: repeated SentencePiece pieces, 2: TrainerSpec,
// 3: NormalizerSpec }; SentencePiece { 1: piece (string), 2: score (float), 3: type (enum, default NORMAL) };
// TrainerSpec { 3: model_type (1 UNIGRAM default, 2 BPE, 3 WORD, 4 CHAR), 35: byte_fallback, 40: unk_id (default 0),
// 41: bos_id (1), 42: eos_id (2), 43: pad_id (-1) }; NormalizerSpec { 3: add_dummy_prefix (default true) }.
// Everything else is skipped by wire type. SentencePiece types 1..6 (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED,
// BYTE) equal the GGUF token types. Only BPE models are supported (llama.cpp's SPM tokenizer is the BPE algorithm).
// Invariant: any truncation or malformed field is a ModelFormatException naming the file and the byte offset.
using System.Text;
using Engine.Formats;

namespace Engine.Tokenizers;

public static class SentencePieceModelVocabulary
{
    /// <summary>The vocabulary of a SentencePiece .model file; ModelFormatException when it is malformed or not BPE.</summary>
    public static Vocabulary Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot read SentencePiece model: {e.Message}", e);
        }
        return Parse(path, bytes);
    }

    /// <summary>Parses a ModelProto image; <paramref name="source"/> names it in errors.</summary>
    public static Vocabulary Parse(string source, ReadOnlySpan<byte> data)
    {
        var tokens = new List<string>();
        var scores = new List<float>();
        var types = new List<TokenType>();
        long modelType = 1; // UNIGRAM is the proto default
        long unk = 0, bos = 1, eos = 2, pad = -1;
        bool addDummyPrefix = true;

        var r = new ProtoReader(source, data, 0);
        while (!r.End)
        {
            var (field, wire) = r.Tag();
            switch (field)
            {
                case 1 when wire == ProtoReader.LengthDelimited:
                {
                    var piece = r.Message();
                    string text = ""; float score = 0; long type = 1;
                    while (!piece.End)
                    {
                        var (f, w) = piece.Tag();
                        if (f == 1 && w == ProtoReader.LengthDelimited) text = piece.Utf8String();
                        else if (f == 2 && w == ProtoReader.WireFixed32) score = BitConverter.Int32BitsToSingle((int)piece.Fixed32Value());
                        else if (f == 3 && w == ProtoReader.WireVarint) type = piece.Varint();
                        else piece.Skip(w);
                    }
                    tokens.Add(text);
                    scores.Add(score);
                    types.Add(type is >= 1 and <= 6 ? (TokenType)type
                        : throw new ModelFormatException(source, r.Position, $"piece {tokens.Count - 1} has unknown type {type}"));
                    break;
                }
                case 2 when wire == ProtoReader.LengthDelimited:
                {
                    var spec = r.Message();
                    while (!spec.End)
                    {
                        var (f, w) = spec.Tag();
                        if (w != ProtoReader.WireVarint) { spec.Skip(w); continue; }
                        long v = spec.Varint();
                        switch (f)
                        {
                            case 3: modelType = v; break;
                            case 40: unk = (int)v; break; // int32 fields: negative values are sign-extended varints
                            case 41: bos = (int)v; break;
                            case 42: eos = (int)v; break;
                            case 43: pad = (int)v; break;
                        }
                    }
                    break;
                }
                case 3 when wire == ProtoReader.LengthDelimited:
                {
                    var spec = r.Message();
                    while (!spec.End)
                    {
                        var (f, w) = spec.Tag();
                        if (f == 3 && w == ProtoReader.WireVarint) addDummyPrefix = spec.Varint() != 0;
                        else spec.Skip(w);
                    }
                    break;
                }
                default:
                    r.Skip(wire);
                    break;
            }
        }

        if (modelType == 1) throw new ModelFormatException(source, -1, "Unigram SentencePiece models are not supported (only BPE)");
        if (modelType != 2) throw new ModelFormatException(source, -1, $"SentencePiece model type {modelType} is not supported (only BPE = 2)");
        if (tokens.Count == 0) throw new ModelFormatException(source, -1, "SentencePiece model has no pieces");

        int? Id(long v, string what) => v == -1 ? null
            : v >= 0 && v < tokens.Count ? (int)v
            : throw new ModelFormatException(source, -1, $"{what} id {v} is outside the vocabulary (0..{tokens.Count - 1})");

        return new Vocabulary
        {
            Model = TokenizerModel.SentencePiece,
            Tokens = tokens.ToArray(),
            Scores = scores.ToArray(),
            Types = types.ToArray(),
            Unk = Id(unk, "unk"),
            Bos = Id(bos, "bos"),
            Eos = Id(eos, "eos"),
            Pad = Id(pad, "pad"),
            AddBos = true,  // llama.cpp's SPM default
            AddSpacePrefix = addDummyPrefix,
            Source = source,
        };
    }

    /// <summary>A bounds-checked protobuf wire-format reader over one message (a window of the file image).</summary>
    private ref struct ProtoReader
    {
        public const int WireVarint = 0, WireFixed64 = 1, LengthDelimited = 2, WireFixed32 = 5;

        private readonly string _source;
        private readonly ReadOnlySpan<byte> _data; // this message's bytes
        private readonly long _base;               // file offset of _data[0] (for error messages)
        private int _pos;

        public ProtoReader(string source, ReadOnlySpan<byte> data, long baseOffset)
        {
            _source = source; _data = data; _base = baseOffset; _pos = 0;
        }

        public readonly bool End => _pos >= _data.Length;
        public readonly long Position => _base + _pos;

        private readonly ModelFormatException Error(string what) =>
            new(_source, _base + _pos, $"malformed SentencePiece model: {what}");

        public long Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 70; shift += 7)
            {
                if (_pos >= _data.Length) throw Error("truncated varint");
                byte b = _data[_pos++];
                if (shift == 63 && b > 1) throw Error("varint overflows 64 bits");
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return (long)value;
            }
            throw Error("varint longer than 10 bytes");
        }

        public (int Field, int Wire) Tag()
        {
            long tag = Varint();
            int field = (int)((ulong)tag >> 3 & 0x1FFFFFFF), wire = (int)(tag & 7);
            if (field == 0) throw Error("field number 0");
            return (field, wire);
        }

        public uint Fixed32Value()
        {
            if (_data.Length - _pos < 4) throw Error("truncated fixed32");
            uint v = BitConverter.ToUInt32(_data.Slice(_pos, 4));
            _pos += 4;
            return v;
        }

        private ReadOnlySpan<byte> Bytes(out long offset)
        {
            long n = Varint();
            if (n < 0 || n > _data.Length - _pos) throw Error($"length {n} runs past the end ({_data.Length - _pos} bytes left)");
            offset = _base + _pos;
            var slice = _data.Slice(_pos, (int)n);
            _pos += (int)n;
            return slice;
        }

        public ProtoReader Message()
        {
            var bytes = Bytes(out long offset);
            return new ProtoReader(_source, bytes, offset);
        }

        public string Utf8String()
        {
            var bytes = Bytes(out long offset);
            try { return Strict.GetString(bytes); }
            catch (DecoderFallbackException) { throw new ModelFormatException(_source, offset, "malformed SentencePiece model: a piece is not valid UTF-8"); }
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case WireVarint: Varint(); break;
                case WireFixed64:
                    if (_data.Length - _pos < 8) throw Error("truncated fixed64");
                    _pos += 8; break;
                case LengthDelimited: Bytes(out _); break;
                case WireFixed32: Fixed32Value(); break;
                default: throw Error($"unsupported wire type {wire}");
            }
        }
    }

    private static readonly UTF8Encoding Strict = new(false, true);
}
