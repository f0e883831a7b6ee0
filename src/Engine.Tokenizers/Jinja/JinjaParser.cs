// Owns: tokens → syntax tree, following Jinja2's grammar and operator precedence (jinja2/parser.py):
// condexpr < or < and < not < compare (==, !=, <, >, <=, >=, in, not in) < + - < ~ < * / // % < ** < unary -/+
// < primary with postfix (.attr, [index], [a:b:c], (call)) and filters/tests (| f, is t) bound to the unary operand.
// Tags: if/elif/else, for (tuple targets, inline "if" filter, else), set (plain, namespace attribute, block),
// macro, break/continue, filter block, generation. Anything else is a JinjaException naming the tag and its position.
namespace Engine.Tokenizers.Jinja;

internal sealed class JinjaParser
{
    private readonly List<Token> _t;
    private int _i;

    private JinjaParser(List<Token> tokens) { _t = tokens; }

    public static List<Node> Parse(string source)
    {
        var p = new JinjaParser(JinjaLexer.Tokenize(source));
        var body = p.ParseBody([], out var endTag);
        if (endTag != null) throw Error($"unexpected '{{% {endTag.Value.Value} %}}' with no open block", endTag.Value);
        return body;
    }

    private Token Peek => _t[_i];
    private Token PeekAt(int k) => _t[Math.Min(_i + k, _t.Count - 1)];
    private Token Next() => _t[_i++];

    private static JinjaException Error(string message, Token at) => new(message, at.Line, at.Column);

    private bool IsOp(string op) => Peek.Kind == TokenKind.Op && Peek.Value == op;
    private bool IsName(string name) => Peek.Kind == TokenKind.Name && Peek.Value == name;

    private Token Expect(TokenKind kind, string? value = null)
    {
        var t = Peek;
        if (t.Kind != kind || (value != null && t.Value != value))
            throw Error($"expected {(value != null ? $"'{value}'" : kind.ToString().ToLowerInvariant())} but found {t}", t);
        return Next();
    }

    private bool Accept(string op)
    {
        if (!IsOp(op)) return false;
        _i++;
        return true;
    }

    private bool AcceptName(string name)
    {
        if (!IsName(name)) return false;
        _i++;
        return true;
    }

    /// <summary>Parses nodes until a block tag whose name is in <paramref name="ends"/> (returned, its "{%" and name consumed) or EOF.</summary>
    private List<Node> ParseBody(string[] ends, out Token? endTag)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        var nodes = new List<Node>();
        while (true)
        {
            var t = Peek;
            switch (t.Kind)
            {
                case TokenKind.Eof:
                    endTag = null;
                    if (ends.Length > 0) throw Error($"missing '{{% {ends[^1]} %}}' before the end of the template", t);
                    return nodes;
                case TokenKind.Text:
                    Next();
                    nodes.Add(new TextNode(t.Value, t.Line, t.Column));
                    break;
                case TokenKind.VarBegin:
                    Next();
                    var e = ParseTuple();
                    Expect(TokenKind.VarEnd);
                    nodes.Add(new OutputNode(e, t.Line, t.Column));
                    break;
                case TokenKind.BlockBegin:
                    var name = PeekAt(1);
                    if (name.Kind != TokenKind.Name) throw Error($"expected a tag name after '{{%' but found {name}", name);
                    if (Array.IndexOf(ends, name.Value) >= 0 || name.Value.StartsWith("end", StringComparison.Ordinal) || name.Value is "elif" or "else")
                    {
                        if (Array.IndexOf(ends, name.Value) < 0)
                            throw Error($"unexpected '{{% {name.Value} %}}'" + (ends.Length > 0 ? $" (expected '{{% {ends[^1]} %}}')" : ""), name);
                        _i += 2;
                        endTag = name;
                        return nodes;
                    }
                    _i += 2;
                    nodes.Add(ParseTag(name));
                    break;
                default:
                    throw Error($"unexpected {t}", t);
            }
        }
    }

    private Node ParseTag(Token tag)
    {
        switch (tag.Value)
        {
            case "if": return ParseIf(tag);
            case "for": return ParseFor(tag);
            case "set": return ParseSet(tag);
            case "macro": return ParseMacro(tag);
            case "break": Expect(TokenKind.BlockEnd); return new BreakNode(tag.Line, tag.Column);
            case "continue": Expect(TokenKind.BlockEnd); return new ContinueNode(tag.Line, tag.Column);
            case "generation":
            {
                Expect(TokenKind.BlockEnd);
                var body = ParseBody(["endgeneration"], out _);
                Expect(TokenKind.BlockEnd);
                return new BlockBodyNode(body, tag.Line, tag.Column);
            }
            case "filter":
            {
                var name = Expect(TokenKind.Name).Value;
                var (args, kwargs) = IsOp("(") ? ParseCallArgs() : ([], []);
                Expect(TokenKind.BlockEnd);
                var body = ParseBody(["endfilter"], out _);
                Expect(TokenKind.BlockEnd);
                return new FilterBlockNode(name, args, kwargs, body, tag.Line, tag.Column);
            }
            default:
                throw Error($"unsupported tag '{{% {tag.Value} %}}'", tag);
        }
    }

    private IfNode ParseIf(Token tag)
    {
        var branches = new List<(Expr, List<Node>)>();
        var cond = ParseExpression();
        Expect(TokenKind.BlockEnd);
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"], out var end);
            branches.Add((cond, body));
            if (end!.Value.Value == "elif") { cond = ParseExpression(); Expect(TokenKind.BlockEnd); continue; }
            Expect(TokenKind.BlockEnd);
            if (end.Value.Value == "endif") return new IfNode(branches, null, tag.Line, tag.Column);
            var elseBody = ParseBody(["endif"], out _);
            Expect(TokenKind.BlockEnd);
            return new IfNode(branches, elseBody, tag.Line, tag.Column);
        }
    }

    private ForNode ParseFor(Token tag)
    {
        var targets = new List<string> { Expect(TokenKind.Name).Value };
        while (Accept(",")) targets.Add(Expect(TokenKind.Name).Value);
        Expect(TokenKind.Name, "in");
        var iterable = ParseTuple(withCondExpr: false);
        Expr? filter = AcceptName("if") ? ParseExpression() : null;
        if (IsName("recursive")) throw Error("unsupported 'recursive' loop", Peek);
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["else", "endfor"], out var end);
        List<Node>? elseBody = null;
        Expect(TokenKind.BlockEnd);
        if (end!.Value.Value == "else")
        {
            elseBody = ParseBody(["endfor"], out _);
            Expect(TokenKind.BlockEnd);
        }
        return new ForNode(targets, iterable, filter, body, elseBody, tag.Line, tag.Column);
    }

    private Node ParseSet(Token tag)
    {
        var first = Expect(TokenKind.Name);
        Expr target = new NameExpr(first.Value, first.Line, first.Column);
        if (Accept("."))
            target = new GetAttrExpr(target, Expect(TokenKind.Name).Value, first.Line, first.Column);
        else if (IsOp(","))
        {
            var names = new List<Expr> { target };
            while (Accept(",")) { var n = Expect(TokenKind.Name); names.Add(new NameExpr(n.Value, n.Line, n.Column)); }
            target = new ListExpr(names, true, first.Line, first.Column);
        }
        if (Peek.Kind == TokenKind.BlockEnd)
        {
            Next();
            var body = ParseBody(["endset"], out _);
            Expect(TokenKind.BlockEnd);
            return new SetBlockNode(target, body, tag.Line, tag.Column);
        }
        Expect(TokenKind.Op, "=");
        var value = ParseTuple();
        Expect(TokenKind.BlockEnd);
        return new SetNode(target, value, tag.Line, tag.Column);
    }

    private MacroNode ParseMacro(Token tag)
    {
        var name = Expect(TokenKind.Name).Value;
        Expect(TokenKind.Op, "(");
        var ps = new List<string>();
        var defaults = new List<Expr?>();
        while (!Accept(")"))
        {
            if (ps.Count > 0) Expect(TokenKind.Op, ",");
            if (Accept(")")) break;
            ps.Add(Expect(TokenKind.Name).Value);
            defaults.Add(Accept("=") ? ParseExpression() : null);
        }
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endmacro"], out _);
        if (Peek.Kind == TokenKind.Name && Peek.Value == name) Next();
        Expect(TokenKind.BlockEnd);
        return new MacroNode(name, ps, defaults, body, tag.Line, tag.Column);
    }

    // ---- expressions ----

    /// <summary>An expression, or an unparenthesised tuple "a, b" (as in {{ }} and set values).</summary>
    private Expr ParseTuple(bool withCondExpr = true)
    {
        var start = Peek;
        var first = withCondExpr ? ParseExpression() : ParseOr();
        if (!IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (Accept(","))
        {
            if (Peek.Kind is TokenKind.VarEnd or TokenKind.BlockEnd) break;
            items.Add(withCondExpr ? ParseExpression() : ParseOr());
        }
        return new ListExpr(items, true, start.Line, start.Column);
    }

    private Expr ParseExpression()
    {
        var start = Peek;
        var e = ParseOr();
        while (AcceptName("if"))
        {
            var cond = ParseOr();
            Expr? other = AcceptName("else") ? ParseExpression() : null;
            e = new CondExpr(cond, e, other, start.Line, start.Column);
        }
        return e;
    }

    private Expr ParseOr()
    {
        var e = ParseAnd();
        while (IsName("or")) { var t = Next(); e = new BinaryExpr("or", e, ParseAnd(), t.Line, t.Column); }
        return e;
    }

    private Expr ParseAnd()
    {
        var e = ParseNot();
        while (IsName("and")) { var t = Next(); e = new BinaryExpr("and", e, ParseNot(), t.Line, t.Column); }
        return e;
    }

    private Expr ParseNot()
    {
        if (IsName("not")) { var t = Next(); return new UnaryExpr("not", ParseNot(), t.Line, t.Column); }
        return ParseCompare();
    }

    private static readonly HashSet<string> CompareOps = ["==", "!=", "<", ">", "<=", ">="];

    private Expr ParseCompare()
    {
        var start = Peek;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Peek.Kind == TokenKind.Op && CompareOps.Contains(Peek.Value)) { var op = Next().Value; rest.Add((op, ParseMath1())); }
            else if (IsName("in")) { Next(); rest.Add(("in", ParseMath1())); }
            else if (IsName("not") && PeekAt(1).Kind == TokenKind.Name && PeekAt(1).Value == "in") { _i += 2; rest.Add(("not in", ParseMath1())); }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, start.Line, start.Column);
    }

    private Expr ParseMath1()
    {
        var e = ParseConcat();
        while (IsOp("+") || IsOp("-")) { var t = Next(); e = new BinaryExpr(t.Value, e, ParseConcat(), t.Line, t.Column); }
        return e;
    }

    private Expr ParseConcat()
    {
        var e = ParseMath2();
        while (IsOp("~")) { var t = Next(); e = new BinaryExpr("~", e, ParseMath2(), t.Line, t.Column); }
        return e;
    }

    private Expr ParseMath2()
    {
        var e = ParsePow();
        while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) { var t = Next(); e = new BinaryExpr(t.Value, e, ParsePow(), t.Line, t.Column); }
        return e;
    }

    private Expr ParsePow()
    {
        var e = ParseUnary(true);
        while (IsOp("**")) { var t = Next(); e = new BinaryExpr("**", e, ParseUnary(true), t.Line, t.Column); }
        return e;
    }

    private Expr ParseUnary(bool withFilter)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        var t = Peek;
        Expr e;
        if (IsOp("-") || IsOp("+")) { Next(); e = new UnaryExpr(t.Value, ParseUnary(false), t.Line, t.Column); }
        else e = ParsePrimary();
        e = ParsePostfix(e);
        return withFilter ? ParseFilterAndTests(e) : e;
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Line, t.Column),
                    "false" or "False" => new LiteralExpr(false, t.Line, t.Column),
                    "none" or "None" => new LiteralExpr(null, t.Line, t.Column),
                    _ => new NameExpr(t.Value, t.Line, t.Column),
                };
            case TokenKind.String:
            {
                var s = t.Value;
                while (Peek.Kind == TokenKind.String) s += Next().Value;   // adjacent literals concatenate
                return new LiteralExpr(s, t.Line, t.Column);
            }
            case TokenKind.Integer:
            case TokenKind.Float:
                return new LiteralExpr(t.Number, t.Line, t.Column);
            case TokenKind.Op when t.Value == "(":
            {
                if (Accept(")")) return new ListExpr([], true, t.Line, t.Column);
                var e = ParseExpression();
                if (IsOp(","))
                {
                    var items = new List<Expr> { e };
                    while (Accept(",") && !IsOp(")")) items.Add(ParseExpression());
                    e = new ListExpr(items, true, t.Line, t.Column);
                }
                Expect(TokenKind.Op, ")");
                return e;
            }
            case TokenKind.Op when t.Value == "[":
            {
                var items = new List<Expr>();
                while (!Accept("]"))
                {
                    if (items.Count > 0) { Expect(TokenKind.Op, ","); if (Accept("]")) break; }
                    items.Add(ParseExpression());
                }
                return new ListExpr(items, false, t.Line, t.Column);
            }
            case TokenKind.Op when t.Value == "{":
            {
                var items = new List<(Expr, Expr)>();
                while (!Accept("}"))
                {
                    if (items.Count > 0) { Expect(TokenKind.Op, ","); if (Accept("}")) break; }
                    var k = ParseExpression();
                    Expect(TokenKind.Op, ":");
                    items.Add((k, ParseExpression()));
                }
                return new DictExpr(items, t.Line, t.Column);
            }
            default:
                throw Error($"unexpected {t} in an expression", t);
        }
    }

    private Expr ParsePostfix(Expr e)
    {
        while (true)
        {
            var t = Peek;
            if (Accept("."))
            {
                var n = Next();
                if (n.Kind is not (TokenKind.Name or TokenKind.Integer)) throw Error($"expected an attribute name after '.' but found {n}", n);
                e = n.Kind == TokenKind.Integer
                    ? new GetItemExpr(e, new LiteralExpr(n.Number, n.Line, n.Column), t.Line, t.Column)
                    : new GetAttrExpr(e, n.Value, t.Line, t.Column);
            }
            else if (Accept("["))
            {
                Expr? start = null, stop = null, step = null;
                bool slice = false;
                if (!IsOp(":")) start = ParseExpression();
                if (Accept(":"))
                {
                    slice = true;
                    if (!IsOp(":") && !IsOp("]")) stop = ParseExpression();
                    if (Accept(":") && !IsOp("]")) step = ParseExpression();
                }
                Expect(TokenKind.Op, "]");
                e = slice ? new SliceExpr(e, start, stop, step, t.Line, t.Column) : new GetItemExpr(e, start!, t.Line, t.Column);
            }
            else if (IsOp("("))
            {
                var (args, kwargs) = ParseCallArgs();
                e = new CallExpr(e, args, kwargs, t.Line, t.Column);
            }
            else return e;
        }
    }

    private (List<Expr>, List<(string, Expr)>) ParseCallArgs()
    {
        Expect(TokenKind.Op, "(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Accept(")"))
        {
            if (args.Count + kwargs.Count > 0) { Expect(TokenKind.Op, ","); if (Accept(")")) break; }
            if (Peek.Kind == TokenKind.Name && PeekAt(1).Kind == TokenKind.Op && PeekAt(1).Value == "=")
            {
                var n = Next().Value;
                Next();
                kwargs.Add((n, ParseExpression()));
            }
            else if (IsOp("*") || IsOp("**")) throw Error("unsupported argument unpacking", Peek);
            else args.Add(ParseExpression());
        }
        return (args, kwargs);
    }

    private Expr ParseFilterAndTests(Expr e)
    {
        while (true)
        {
            var t = Peek;
            if (Accept("|"))
            {
                var name = ParseDottedName();
                var (args, kwargs) = IsOp("(") ? ParseCallArgs() : ([], []);
                e = new FilterExpr(e, name, args, kwargs, t.Line, t.Column);
            }
            else if (IsName("is"))
            {
                Next();
                bool negated = AcceptName("not");
                var name = ParseDottedName();
                var args = new List<Expr>();
                if (IsOp("(")) { var (a, _) = ParseCallArgs(); args = a; }
                else if (Peek.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || (Peek.Kind == TokenKind.Name && Peek.Value is not ("and" or "or" or "else" or "if" or "in" or "not" or "is")))
                    args.Add(ParseUnary(false));
                e = new TestExpr(e, name, args, negated, t.Line, t.Column);
            }
            else return e;
        }
    }

    private string ParseDottedName()
    {
        var name = Expect(TokenKind.Name).Value;
        while (IsOp(".") && PeekAt(1).Kind == TokenKind.Name) { _i++; name += "." + Next().Value; }
        return name;
    }
}
