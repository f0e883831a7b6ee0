// Owns: the syntax tree the parser builds and the evaluator walks. Statements render text; expressions produce
// values. Every node keeps the line/column of its first token for error messages.
namespace Engine.Tokenizers.Jinja;

internal abstract record Node(int Line, int Column);

// ---- statements ----
internal sealed record TextNode(string Text, int Line, int Column) : Node(Line, Column);
internal sealed record OutputNode(Expr Value, int Line, int Column) : Node(Line, Column);
internal sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else, int Line, int Column) : Node(Line, Column);
internal sealed record ForNode(List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else, int Line, int Column) : Node(Line, Column);
/// <summary>{% set target = value %}; target is a Name, a namespace attribute (GetAttr) or a tuple of names.</summary>
internal sealed record SetNode(Expr Target, Expr Value, int Line, int Column) : Node(Line, Column);
internal sealed record SetBlockNode(Expr Target, List<Node> Body, int Line, int Column) : Node(Line, Column);
internal sealed record MacroNode(string Name, List<string> Params, List<Expr?> Defaults, List<Node> Body, int Line, int Column) : Node(Line, Column);
internal sealed record BreakNode(int Line, int Column) : Node(Line, Column);
internal sealed record ContinueNode(int Line, int Column) : Node(Line, Column);
/// <summary>{% generation %} ... {% endgeneration %} (transformers' assistant-mask marker): renders its body.</summary>
internal sealed record BlockBodyNode(List<Node> Body, int Line, int Column) : Node(Line, Column);
internal sealed record FilterBlockNode(string Filter, List<Expr> Args, List<(string, Expr)> Kwargs, List<Node> Body, int Line, int Column) : Node(Line, Column);

// ---- expressions ----
internal abstract record Expr(int Line, int Column) : Node(Line, Column);
internal sealed record LiteralExpr(object? Value, int Line, int Column) : Expr(Line, Column);
internal sealed record NameExpr(string Name, int Line, int Column) : Expr(Line, Column);
internal sealed record ListExpr(List<Expr> Items, bool IsTuple, int Line, int Column) : Expr(Line, Column);
internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Line, int Column) : Expr(Line, Column);
internal sealed record GetAttrExpr(Expr Target, string Name, int Line, int Column) : Expr(Line, Column);
internal sealed record GetItemExpr(Expr Target, Expr Index, int Line, int Column) : Expr(Line, Column);
internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Line, int Column) : Expr(Line, Column);
internal sealed record CallExpr(Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Line, int Column) : Expr(Line, Column);
internal sealed record FilterExpr(Expr Value, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Line, int Column) : Expr(Line, Column);
internal sealed record TestExpr(Expr Value, string Name, List<Expr> Args, bool Negated, int Line, int Column) : Expr(Line, Column);
internal sealed record UnaryExpr(string Op, Expr Operand, int Line, int Column) : Expr(Line, Column);
internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line, int Column) : Expr(Line, Column);
/// <summary>A comparison chain a op1 b op2 c (Python semantics: a op1 b and b op2 c).</summary>
internal sealed record CompareExpr(Expr First, List<(string Op, Expr Operand)> Rest, int Line, int Column) : Expr(Line, Column);
internal sealed record CondExpr(Expr Condition, Expr Then, Expr? Else, int Line, int Column) : Expr(Line, Column);
