// Owns: the public face of the Jinja interpreter — parse a template once, render it many times with a set of
// variables. Values given to Render may be plain .NET values (string, bool, int/long, double, null, IEnumerable,
// IDictionary<string, ...>, JsonElement) and are converted to interpreter values here.
// Invariant: Parse and Render throw only JinjaException (with line/column) for any problem in the template or its
// evaluation; a template cannot hang (no unbounded loops exist in the language subset) or overflow the stack.
using System.Collections;
using System.Text.Json;

namespace Engine.Tokenizers.Jinja;

public sealed class JinjaTemplate
{
    private readonly List<Node> _body;

    private JinjaTemplate(string source, List<Node> body) { Source = source; _body = body; }

    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>; JinjaException on a syntax error or an unsupported construct.</summary>
    public static JinjaTemplate Parse(string source)
    {
        try { return new(source, JinjaParser.Parse(source)); }
        catch (InsufficientExecutionStackException) { throw new JinjaException("the template nests too deeply", 0, 0); }
    }

    /// <summary>Renders with <paramref name="variables"/>; <paramref name="clock"/> feeds strftime_now (default: local now).</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? clock = null)
    {
        var converted = variables.ToDictionary(p => p.Key, p => ToValue(p.Value));
        try { return new JinjaEvaluator(clock ?? (() => DateTime.Now)).Render(_body, converted); }
        catch (InsufficientExecutionStackException) { throw new JinjaException("the template nests too deeply", 0, 0); }
    }

    /// <summary>A .NET value as an interpreter value.</summary>
    public static object? ToValue(object? v) => v switch
    {
        null => null,
        string or bool or long or double or JinjaList or JinjaDict or JinjaNamespace or JinjaCallable or JinjaUndefined => v,
        int i => (long)i,
        float f => (double)f,
        JsonElement e => JinjaValues.FromJson(e),
        JsonDocument d => JinjaValues.FromJson(d.RootElement),
        IDictionary dict => ToDict(dict),
        IEnumerable seq => new JinjaList(seq.Cast<object?>().Select(ToValue)),
        _ => throw new ArgumentException($"cannot pass a {v.GetType().Name} to a template"),
    };

    private static JinjaDict ToDict(IDictionary dict)
    {
        var d = new JinjaDict();
        foreach (DictionaryEntry e in dict)
            d[e.Key as string ?? throw new ArgumentException("template dictionary keys must be strings")] = ToValue(e.Value);
        return d;
    }
}
