// Owns: turning Jinja source text into tokens: literal text runs and the token streams of {{ }}, {% %} tags
// ({# #} comments are dropped). Whitespace control follows Jinja2's lexer as Hugging Face transformers configures it
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False): "{%-"/"{{-"/"{#-" strip all whitespace
// before the tag, "-%}"/"-}}"/"-#}" all whitespace after it; a block or comment tag eats one "\n" right after it
// (trim_blocks) and the spaces/tabs before it on its line when nothing else is there (lstrip_blocks); "{%+" / "+%}"
// turn those two off for one tag; one trailing "\n" of the whole template is dropped.
// Invariant: every token carries the 1-based line/column of its first character.
using System.Globalization;
using System.Text;

namespace Engine.Tokenizers.Jinja;

internal enum TokenKind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Op, Eof }

internal readonly record struct Token(TokenKind Kind, string Value, int Line, int Column)
{
    public object? Number { get; init; }
    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.VarEnd => "'}}'",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}

internal sealed class JinjaLexer
{
    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    private readonly string _src;
    private readonly List<Token> _tokens = [];
    private int _pos;
    private bool _stripNextText;      // previous tag ended with "-"
    private bool _trimNextNewline;    // previous block/comment tag ended without "+" (trim_blocks)
    private bool _lineStart = true;   // the next text starts at the beginning of a line

    private readonly List<int> _lineStarts = [0];

    private JinjaLexer(string src)
    {
        _src = src.EndsWith('\n') ? src[..^1] : src;
        for (int i = 0; i < _src.Length; i++) if (_src[i] == '\n') _lineStarts.Add(i + 1);
    }

    public static List<Token> Tokenize(string source) => new JinjaLexer(source).Run();

    private (int Line, int Column) Position(int pos)
    {
        int idx = _lineStarts.BinarySearch(pos);
        int line = idx >= 0 ? idx : ~idx - 1;
        return (line + 1, pos - _lineStarts[line] + 1);
    }

    private JinjaException Error(string message, int pos)
    {
        var (l, c) = Position(pos);
        return new JinjaException(message, l, c);
    }

    private List<Token> Run()
    {
        while (_pos < _src.Length)
        {
            int next = FindTagStart(_pos);
            int textEnd = next < 0 ? _src.Length : next;
            string text = _src[_pos..textEnd];
            int textPos = _pos;
            if (_stripNextText) text = text.TrimStart();
            else if (_trimNextNewline && text.StartsWith('\n')) text = text[1..];
            _stripNextText = _trimNextNewline = false;
            if (next < 0) { AddText(text, textPos); break; }

            char kind = _src[next + 1];
            char ctl = next + 2 < _src.Length ? _src[next + 2] : '\0';
            if (ctl == '-') text = text.TrimEnd();
            else if (ctl != '+' && kind is '%' or '#')
            {
                int lineStartPos = text.LastIndexOf('\n') + 1;
                if ((lineStartPos > 0 || _lineStart) && text.AsSpan(lineStartPos).IndexOfAnyExcept(" \t") < 0)
                    text = text[..lineStartPos];
            }
            AddText(text, textPos);
            _pos = next + 2 + (ctl is '-' or '+' ? 1 : 0);
            if (kind == '#') LexComment(next);
            else LexTag(kind == '{' ? TokenKind.VarBegin : TokenKind.BlockBegin, next);
        }
        var (el, ec) = Position(_src.Length);
        _tokens.Add(new Token(TokenKind.Eof, "", el, ec));
        return _tokens;
    }

    private void AddText(string text, int pos)
    {
        if (text.Length == 0) return;
        var (l, c) = Position(pos);
        _tokens.Add(new Token(TokenKind.Text, text, l, c));
    }

    private int FindTagStart(int from)
    {
        for (int i = _src.IndexOf('{', from); i >= 0 && i + 1 < _src.Length; i = _src.IndexOf('{', i + 1))
            if (_src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    private void LexComment(int start)
    {
        int end = _src.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0) throw Error("unclosed comment '{#'", start);
        AfterTagEnd(_src[end - 1], end + 2, block: true);
    }

    /// <summary>Sets the whitespace flags for the text after a tag that ends at <paramref name="after"/>.</summary>
    private void AfterTagEnd(char before, int after, bool block)
    {
        _pos = after;
        if (before == '-') _stripNextText = true;
        else if (block && before != '+') _trimNextNewline = true;
        _lineStart = after > 0 && _src[after - 1] == '\n'
            || (_trimNextNewline && after < _src.Length && _src[after] == '\n');
    }

    private void LexTag(TokenKind begin, int start)
    {
        var (l, c) = Position(start);
        _tokens.Add(new Token(begin, begin == TokenKind.VarBegin ? "{{" : "{%", l, c));
        string close = begin == TokenKind.VarBegin ? "}}" : "%}";
        while (true)
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) _pos++;
            if (_pos >= _src.Length) throw Error($"unclosed tag '{(begin == TokenKind.VarBegin ? "{{" : "{%")}'", start);
            // end of tag, with optional "-" / "+" control
            foreach (var ctl in new[] { "-", "+", "" })
                if (string.CompareOrdinal(_src, _pos, ctl + close, 0, ctl.Length + 2) == 0)
                {
                    var (el, ec) = Position(_pos);
                    _tokens.Add(new Token(begin == TokenKind.VarBegin ? TokenKind.VarEnd : TokenKind.BlockEnd, close, el, ec));
                    AfterTagEnd(ctl.Length == 1 ? ctl[0] : '\0', _pos + ctl.Length + 2, block: begin == TokenKind.BlockBegin);
                    return;
                }
            LexOne();
        }
    }

    private void LexOne()
    {
        int p = _pos;
        var (l, c) = Position(p);
        char ch = _src[p];
        if (char.IsLetter(ch) || ch == '_')
        {
            int e = p;
            while (e < _src.Length && (char.IsLetterOrDigit(_src[e]) || _src[e] == '_')) e++;
            _tokens.Add(new Token(TokenKind.Name, _src[p..e], l, c));
            _pos = e;
            return;
        }
        if (char.IsAsciiDigit(ch))
        {
            int e = p;
            while (e < _src.Length && (char.IsAsciiDigit(_src[e]) || _src[e] == '_')) e++;
            bool isFloat = false;
            if (e + 1 < _src.Length && _src[e] == '.' && char.IsAsciiDigit(_src[e + 1]))
            {
                isFloat = true; e++;
                while (e < _src.Length && char.IsAsciiDigit(_src[e])) e++;
            }
            if (e < _src.Length && _src[e] is 'e' or 'E')
            {
                int f = e + 1;
                if (f < _src.Length && _src[f] is '+' or '-') f++;
                if (f < _src.Length && char.IsAsciiDigit(_src[f]))
                {
                    isFloat = true; e = f;
                    while (e < _src.Length && char.IsAsciiDigit(_src[e])) e++;
                }
            }
            string s = _src[p..e].Replace("_", "");
            object num = isFloat ? (object)double.Parse(s, CultureInfo.InvariantCulture)
                : long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? (object)v
                : throw Error($"integer literal {s} is too large", p);
            _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, s, l, c) { Number = num });
            _pos = e;
            return;
        }
        if (ch is '\'' or '"')
        {
            _tokens.Add(new Token(TokenKind.String, LexString(ch), l, c));
            return;
        }
        foreach (var op in Operators)
            if (string.CompareOrdinal(_src, p, op, 0, op.Length) == 0)
            {
                _tokens.Add(new Token(TokenKind.Op, op, l, c));
                _pos = p + op.Length;
                return;
            }
        throw Error($"unexpected character '{ch}'", p);
    }

    /// <summary>A Python-style quoted string with backslash escapes.</summary>
    private string LexString(char quote)
    {
        int start = _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _src.Length) throw Error("unclosed string literal", start);
            char ch = _src[_pos++];
            if (ch == quote) return sb.ToString();
            if (ch != '\\') { sb.Append(ch); continue; }
            if (_pos >= _src.Length) throw Error("unclosed string literal", start);
            char esc = _src[_pos++];
            switch (esc)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case '0': sb.Append('\0'); break;
                case '\\': case '\'': case '"': sb.Append(esc); break;
                case '\n': break;
                case 'x' or 'u' or 'U':
                {
                    int n = esc == 'x' ? 2 : esc == 'u' ? 4 : 8;
                    if (_pos + n > _src.Length || !int.TryParse(_src.AsSpan(_pos, n), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp))
                        throw Error($"bad \\{esc} escape in string literal", _pos - 2);
                    sb.Append(char.ConvertFromUtf32(cp));
                    _pos += n;
                    break;
                }
                default: sb.Append('\\').Append(esc); break;  // Python keeps unknown escapes as written
            }
        }
    }
}
