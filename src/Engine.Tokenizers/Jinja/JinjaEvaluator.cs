// Owns: walking the syntax tree — statements write text, expressions produce values (JinjaValues). Scoping follows
// Jinja2: a for-loop body and a macro body get their own scope (a plain `set` inside them does not leak out, which
// is why templates use namespace()); if/elif/else do not create one. Attribute access `a.b` tries the object's
// attribute/method first and then the key, `a[b]` the key first (Jinja2's getattr/getitem order); a miss is
// Undefined (printed as "", falsy; further attribute access stays Undefined).
// Invariants: every runtime failure is a JinjaException with the failing node's line/column; macro recursion,
// nesting depth, range() sizes, total loop iterations and output size are bounded, so no template can overflow the
// stack, run for minutes or exhaust memory.
using System.Text;

namespace Engine.Tokenizers.Jinja;

internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);
    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s != null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>The `loop` variable of one for-loop iteration; its attributes are computed on access.</summary>
internal sealed class JinjaLoop(List<object?> items, int index)
{
    public object? Get(string name) => name switch
    {
        "index" => (long)index + 1,
        "index0" => (long)index,
        "revindex" => (long)(items.Count - index),
        "revindex0" => (long)(items.Count - index - 1),
        "first" => index == 0,
        "last" => index == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => index > 0 ? items[index - 1] : new JinjaUndefined("loop.previtem"),
        "nextitem" => index + 1 < items.Count ? items[index + 1] : new JinjaUndefined("loop.nextitem"),
        "cycle" => new JinjaCallable("loop.cycle", (args, _) =>
            args.Count == 0 ? throw new InvalidOperationException("loop.cycle() needs at least one value") : args[index % args.Count]),
        _ => new JinjaUndefined("loop." + name),
    };
}

internal sealed partial class JinjaEvaluator
{
    private enum Flow { Normal, Break, Continue }

    private const int MaxMacroDepth = 200;
    private const long MaxIterations = 1_000_000;
    private const int MaxOutputChars = 64 << 20;
    private int _macroDepth;
    private long _iterations;
    private readonly Func<DateTime> _clock;

    public JinjaEvaluator(Func<DateTime> clock) { _clock = clock; }

    public string Render(List<Node> body, IReadOnlyDictionary<string, object?> variables)
    {
        var globals = new Scope(null);
        foreach (var (k, v) in Globals()) globals.Set(k, v);
        var top = new Scope(globals);
        foreach (var (k, v) in variables) top.Set(k, v);
        var sb = new StringBuilder();
        var flow = Exec(body, top, sb);
        if (flow != Flow.Normal) throw new JinjaException($"'{(flow == Flow.Break ? "break" : "continue")}' outside a loop", 0, 0);
        return sb.ToString();
    }

    private Flow Exec(List<Node> body, Scope scope, StringBuilder sb)
    {
        foreach (var node in body)
        {
            var flow = ExecOne(node, scope, sb);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Node node, Scope scope, StringBuilder sb)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        if (sb.Length > MaxOutputChars) throw new JinjaException($"the template's output exceeds {MaxOutputChars} characters", node.Line, node.Column);
        switch (node)
        {
            case TextNode t: sb.Append(t.Text); return Flow.Normal;
            case OutputNode o: sb.Append(JinjaValues.Str(Eval(o.Value, scope))); return Flow.Normal;
            case IfNode i:
                foreach (var (cond, branch) in i.Branches)
                    if (JinjaValues.Truthy(Eval(cond, scope))) return Exec(branch, scope, sb);
                return i.Else != null ? Exec(i.Else, scope, sb) : Flow.Normal;
            case ForNode f: ExecFor(f, scope, sb); return Flow.Normal;
            case SetNode s: Assign(s.Target, Eval(s.Value, scope), scope); return Flow.Normal;
            case SetBlockNode sbn:
            {
                var inner = new StringBuilder();
                Exec(sbn.Body, scope, inner);
                Assign(sbn.Target, inner.ToString(), scope);
                return Flow.Normal;
            }
            case MacroNode m: scope.Set(m.Name, MakeMacro(m, scope)); return Flow.Normal;
            case BreakNode: return Flow.Break;
            case ContinueNode: return Flow.Continue;
            case BlockBodyNode b: return Exec(b.Body, scope, sb);
            case FilterBlockNode fb:
            {
                var inner = new StringBuilder();
                var flow = Exec(fb.Body, scope, inner);
                var args = fb.Args.Select(a => Eval(a, scope)).ToList();
                var kwargs = fb.Kwargs.Select(k => (k.Item1, Eval(k.Item2, scope))).ToList();
                sb.Append(JinjaValues.Str(Wrap(fb, () => ApplyFilter(fb.Filter, inner.ToString(), args, kwargs, fb))));
                return flow;
            }
            default:
                throw new JinjaException($"unsupported construct {node.GetType().Name}", node.Line, node.Column);
        }
    }

    private void ExecFor(ForNode f, Scope scope, StringBuilder sb)
    {
        var iterable = Eval(f.Iterable, scope);
        List<object?> items = Wrap(f, () => JinjaValues.Iterate(iterable).ToList());
        if (f.Filter != null)
            items = items.Where(item =>
            {
                var probe = new Scope(scope);
                Bind(f, probe, item);
                return JinjaValues.Truthy(Eval(f.Filter, probe));
            }).ToList();
        if (items.Count == 0)
        {
            if (f.Else != null) Exec(f.Else, scope, sb);
            return;
        }
        for (int i = 0; i < items.Count; i++)
        {
            if (++_iterations > MaxIterations)
                throw new JinjaException($"the template ran more than {MaxIterations} loop iterations", f.Line, f.Column);
            var inner = new Scope(scope);
            Bind(f, inner, items[i]);
            var loop = new JinjaLoop(items, i);
            inner.Set("loop", loop);
            if (Exec(f.Body, inner, sb) == Flow.Break) break;
        }
    }

    private static void Bind(ForNode f, Scope scope, object? item)
    {
        if (f.Targets.Count == 1) { scope.Set(f.Targets[0], item); return; }
        if (item is not JinjaList parts || parts.Count != f.Targets.Count)
            throw new JinjaException($"cannot unpack {JinjaValues.TypeName(item)} into {f.Targets.Count} loop variables", f.Line, f.Column);
        for (int k = 0; k < parts.Count; k++) scope.Set(f.Targets[k], parts[k]);
    }

    private void Assign(Expr target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameExpr n: scope.Set(n.Name, value); break;
            case GetAttrExpr { Target: NameExpr ns } a:
                if (!scope.TryGet(ns.Name, out var obj) || obj is not JinjaNamespace space)
                    throw new JinjaException($"cannot assign attribute '{a.Name}' on '{ns.Name}': it is not a namespace()", a.Line, a.Column);
                space.Attributes[a.Name] = value;
                break;
            case ListExpr { IsTuple: true } tuple:
                if (value is not JinjaList parts || parts.Count != tuple.Items.Count)
                    throw new JinjaException($"cannot unpack {JinjaValues.TypeName(value)} into {tuple.Items.Count} names", target.Line, target.Column);
                for (int k = 0; k < parts.Count; k++) Assign(tuple.Items[k], parts[k], scope);
                break;
            default:
                throw new JinjaException("unsupported assignment target", target.Line, target.Column);
        }
    }

    private JinjaCallable MakeMacro(MacroNode m, Scope closure) => new(m.Name, (args, kwargs) =>
    {
        if (args.Count > m.Params.Count)
            throw new InvalidOperationException($"macro '{m.Name}' takes {m.Params.Count} arguments, {args.Count} given");
        if (++_macroDepth > MaxMacroDepth)
        {
            _macroDepth = 0;
            throw new InvalidOperationException($"macro '{m.Name}' recursed deeper than {MaxMacroDepth} calls");
        }
        try
        {
            var scope = new Scope(closure);
            for (int k = 0; k < m.Params.Count; k++)
            {
                object? v;
                int kw = kwargs.FindIndex(p => p.Name == m.Params[k]);
                if (k < args.Count) v = args[k];
                else if (kw >= 0) v = kwargs[kw].Value;
                else if (m.Defaults[k] is { } d) v = Eval(d, scope);
                else v = new JinjaUndefined(m.Params[k]);
                scope.Set(m.Params[k], v);
            }
            foreach (var (name, _) in kwargs)
                if (!m.Params.Contains(name)) throw new InvalidOperationException($"macro '{m.Name}' has no parameter '{name}'");
            var sb = new StringBuilder();
            Exec(m.Body, scope, sb);
            return sb.ToString();
        }
        finally { if (_macroDepth > 0) _macroDepth--; }
    });

    /// <summary>Runs <paramref name="f"/>, turning a runtime error into a JinjaException at <paramref name="at"/>.</summary>
    private static T Wrap<T>(Node at, Func<T> f)
    {
        try { return f(); }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException or InvalidCastException or KeyNotFoundException)
        {
            throw new JinjaException(e.Message, at.Line, at.Column);
        }
    }

    // ---- expressions ----

    private object? Eval(Expr e, Scope scope) => Wrap(e, () => EvalCore(e, scope));

    private object? EvalCore(Expr e, Scope scope)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        switch (e)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n: return scope.TryGet(n.Name, out var v) ? v : new JinjaUndefined(n.Name);
            case ListExpr l: return new JinjaList(l.Items.Select(i => Eval(i, scope))) { IsTuple = l.IsTuple };
            case DictExpr d:
            {
                var dict = new JinjaDict();
                foreach (var (k, val) in d.Items)
                    dict[Eval(k, scope) as string ?? throw new InvalidOperationException("dictionary keys must be strings")] = Eval(val, scope);
                return dict;
            }
            case GetAttrExpr a: return GetAttr(Eval(a.Target, scope), a.Name);
            case GetItemExpr g: return GetItem(Eval(g.Target, scope), Eval(g.Index, scope));
            case SliceExpr s:
                return Slice(Eval(s.Target, scope), s.Start is null ? null : Eval(s.Start, scope),
                    s.Stop is null ? null : Eval(s.Stop, scope), s.Step is null ? null : Eval(s.Step, scope));
            case CallExpr c:
            {
                var callee = Eval(c.Callee, scope);
                var args = c.Args.Select(a => Eval(a, scope)).ToList();
                var kwargs = c.Kwargs.Select(k => (k.Name, Eval(k.Value, scope))).ToList();
                if (callee is JinjaCallable f)
                {
                    try { return f.Function(args, kwargs); }
                    catch (JinjaRaisedException r) when (r.Line == 0) { throw new JinjaRaisedException(r.TemplateMessage, c.Line, c.Column); }
                }
                throw new InvalidOperationException(callee is JinjaUndefined u
                    ? $"'{Describe(c.Callee)}' is undefined (no such function or method)"
                    : $"'{JinjaValues.TypeName(callee)}' object is not callable");
            }
            case FilterExpr f:
            {
                var value = Eval(f.Value, scope);
                var args = f.Args.Select(a => Eval(a, scope)).ToList();
                var kwargs = f.Kwargs.Select(k => (k.Name, Eval(k.Value, scope))).ToList();
                return ApplyFilter(f.Name, value, args, kwargs, f);
            }
            case TestExpr t:
            {
                var value = Eval(t.Value, scope);
                var args = t.Args.Select(a => Eval(a, scope)).ToList();
                return ApplyTest(t.Name, value, args, t) != t.Negated;
            }
            case UnaryExpr u:
            {
                var v1 = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !JinjaValues.Truthy(v1),
                    "-" => v1 switch { long l => (object)(-l), double d => -d, bool b => b ? -1L : 0L, _ => throw new InvalidOperationException($"bad operand type for unary -: '{JinjaValues.TypeName(v1)}'") },
                    _ => JinjaValues.IsNumber(v1) ? v1 : throw new InvalidOperationException($"bad operand type for unary +: '{JinjaValues.TypeName(v1)}'"),
                };
            }
            case BinaryExpr b:
            {
                var left = Eval(b.Left, scope);
                if (b.Op == "and") return JinjaValues.Truthy(left) ? Eval(b.Right, scope) : left;
                if (b.Op == "or") return JinjaValues.Truthy(left) ? left : Eval(b.Right, scope);
                return JinjaOperators.Binary(b.Op, left, Eval(b.Right, scope));
            }
            case CompareExpr c:
            {
                var left = Eval(c.First, scope);
                foreach (var (op, operand) in c.Rest)
                {
                    var right = Eval(operand, scope);
                    if (!JinjaOperators.Compare(op, left, right)) return false;
                    left = right;
                }
                return true;
            }
            case CondExpr c:
                return JinjaValues.Truthy(Eval(c.Condition, scope)) ? Eval(c.Then, scope)
                    : c.Else != null ? Eval(c.Else, scope) : new JinjaUndefined("conditional expression");
            default:
                throw new JinjaException($"unsupported expression {e.GetType().Name}", e.Line, e.Column);
        }
    }

    private static string Describe(Expr e) => e switch
    {
        NameExpr n => n.Name,
        GetAttrExpr a => Describe(a.Target) + "." + a.Name,
        LiteralExpr l => JinjaValues.TypeName(l.Value),
        _ => "expression",
    };

    internal object? GetAttr(object? obj, string name)
    {
        switch (obj)
        {
            case JinjaNamespace ns:
                return ns.Attributes.TryGetValue(name, out var nv) ? nv : new JinjaUndefined(name);
            case JinjaLoop loop: return loop.Get(name);
            case JinjaDict d:
                if (JinjaMethods.DictMethod(d, name) is { } dm) return dm;
                return d.TryGetValue(name, out var dv) ? dv : new JinjaUndefined(name);
            case string s: return (object?)JinjaMethods.StringMethod(s, name) ?? new JinjaUndefined(name);
            case JinjaList l: return (object?)JinjaMethods.ListMethod(l, name) ?? new JinjaUndefined(name);
            default: return new JinjaUndefined(name);
        }
    }

    internal object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case JinjaDict d:
                if (key is string k) return d.TryGetValue(k, out var v) ? v : (object?)JinjaMethods.DictMethod(d, k) ?? new JinjaUndefined(k);
                return new JinjaUndefined(JinjaValues.Repr(key));
            case JinjaNamespace ns when key is string k2: return GetAttr(ns, k2);
            case JinjaLoop loop when key is string k3: return loop.Get(k3);
            case JinjaList l when key is long or bool:
            {
                long i = (long)JinjaValues.ToDouble(key);
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : new JinjaUndefined($"[{key}]");
            }
            case string s when key is long or bool:
            {
                long i = (long)JinjaValues.ToDouble(key);
                if (i < 0) i += s.Length;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : new JinjaUndefined($"[{key}]");
            }
            case JinjaList or string when key is string name: return GetAttr(obj, name);
            case JinjaUndefined u: return new JinjaUndefined(u.Name);
            case null: return new JinjaUndefined("None");
            default:
                throw new InvalidOperationException($"'{JinjaValues.TypeName(obj)}' object is not subscriptable with {JinjaValues.TypeName(key)}");
        }
    }

    /// <summary>Python slicing obj[start:stop:step] on lists and strings.</summary>
    private static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        long? Opt(object? v, string what) => v switch
        {
            null or JinjaUndefined => null,
            long l => l,
            bool b => b ? 1 : 0,
            _ => throw new InvalidOperationException($"slice {what} must be an integer, got {JinjaValues.TypeName(v)}"),
        };
        long st = Opt(step, "step") ?? 1;
        if (st == 0) throw new InvalidOperationException("slice step cannot be zero");
        int n = obj switch
        {
            JinjaList l => l.Count,
            string s => s.Length,
            _ => throw new InvalidOperationException($"'{JinjaValues.TypeName(obj)}' object cannot be sliced"),
        };
        long Norm(long? v, long dflt)
        {
            if (v is not long x) return dflt;
            if (x < 0) x += n;
            return st > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long a = Norm(Opt(start, "start"), st > 0 ? 0 : n - 1), b = Norm(Opt(stop, "stop"), st > 0 ? n : -1);
        var idx = new List<int>();
        for (long i = a; st > 0 ? i < b : i > b; i += st) idx.Add((int)i);
        if (obj is string str)
        {
            var sb = new StringBuilder(idx.Count);
            foreach (var i in idx) sb.Append(str[i]);
            return sb.ToString();
        }
        var list = (JinjaList)obj!;
        return new JinjaList(idx.Select(i => list[i])) { IsTuple = list.IsTuple };
    }
}
