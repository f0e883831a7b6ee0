// Owns: the Jinja interpreter's behaviour construct by construct: each JinjaOracleCases template must render exactly
// as Jinja2 (the reference implementation) did; plus the error contract (unknown tag/filter/test/method → a
// JinjaException naming it with line and column; raise_exception → its message) and the resource bounds.
using System.Text.Json;
using Engine.Tokenizers.Jinja;

namespace Engine.Tokenizers.Tests.Jinja;

public class JinjaInterpreterTests
{
    private static IEnumerable<OracleCase> Cases() => JinjaOracleCases.All();

    private static string Render(string template, object? vars = null)
    {
        var d = new Dictionary<string, object?>();
        if (vars is string json)
        {
            using var doc = JsonDocument.Parse(json);
            foreach (var p in doc.RootElement.EnumerateObject()) d[p.Name] = JinjaTemplate.ToValue(p.Value);
        }
        return JinjaTemplate.Parse(template).Render(d, () => JinjaOracleCases.Clock);
    }

    [TestCaseSource(nameof(Cases))]
    public void RendersAsJinja2(OracleCase c) => Assert.That(Render(c.Template, c.VariablesJson), Is.EqualTo(c.Expected));

    [TestCase("{% include 'x.jinja' %}", "unsupported tag '{% include %}'", 1, 4)]
    [TestCase("a\n  {% extends 'base' %}", "unsupported tag '{% extends %}'", 2, 6)]
    [TestCase("{% for x in y recursive %}{% endfor %}", "unsupported 'recursive' loop", 1, 15)]
    [TestCase("{% if x %}", "missing '{% endif %}'", 1, 11)]
    [TestCase("{% endfor %}", "unexpected '{% endfor %}'", 1, 4)]
    [TestCase("{{ x | }}", "expected name", 1, 8)]
    [TestCase("{{ 'abc }}", "unclosed string literal", 1, 4)]
    [TestCase("{{ x", "unclosed tag", 1, 1)]
    [TestCase("{{ a ? b }}", "unexpected character '?'", 1, 6)]
    public void SyntaxErrorsNameTheConstructAndPosition(string template, string message, int line, int column)
    {
        var e = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template));
        Assert.That(e!.Message, Does.Contain(message));
        Assert.That((e.Line, e.Column), Is.EqualTo((line, column)), e.Message);
    }

    [TestCase("{{ x|frobnicate }}", "unknown filter 'frobnicate'")]
    [TestCase("{% if x is frob %}{% endif %}", "unknown test 'frob'")]
    [TestCase("{{ 'a'.frob() }}", "'str.frob' is undefined")]
    [TestCase("{{ nosuch() }}", "'nosuch' is undefined")]
    [TestCase("{{ 1 + 'a' }}", "unsupported operand type(s) for +: 'int' and 'str'")]
    [TestCase("{{ 1 // 0 }}", "division by zero")]
    [TestCase("{{ 'a' % 1 }}", "printf-style")]
    [TestCase("{{ 1 < 'a' }}", "'<' not supported")]
    [TestCase("{% for a, b in [1] %}{% endfor %}", "cannot unpack")]
    [TestCase("{% set x.y = 1 %}", "not a namespace")]
    public void RuntimeErrorsAreJinjaExceptions(string template, string message)
    {
        var e = Assert.Throws<JinjaException>(() => Render(template, "{\"x\": 1}"));
        Assert.That(e!.Message, Does.Contain(message));
        Assert.That(e.Line, Is.EqualTo(1), e.Message);
    }

    [Test]
    public void RaiseExceptionCarriesTheTemplatesMessage()
    {
        var e = Assert.Throws<JinjaRaisedException>(() => Render("line 1\n{{ raise_exception('Conversation roles must alternate') }}"));
        Assert.That(e!.TemplateMessage, Is.EqualTo("Conversation roles must alternate"));
        Assert.That((e.Line, e.Column), Is.EqualTo((2, 19)));
    }

    [Test]
    public void ListAppendMutatesTheList()
    {
        // Jinja2's immutable sandbox forbids append; templates written for llama.cpp's engines use it, so it works here.
        Assert.That(Render("{% set l = [1] %}{% set _ = l.append(2) %}{{ l }}|{{ l|length }}"), Is.EqualTo("[1, 2]|2"));
    }

    [Test]
    public void UnboundedRecursionAndHugeRangesAreErrorsNotCrashes()
    {
        var e = Assert.Throws<JinjaException>(() => Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"));
        Assert.That(e!.Message, Does.Contain("recursed deeper"));
        Assert.Throws<JinjaException>(() => Render("{% for i in range(10000000) %}{% endfor %}"));
        Assert.Throws<JinjaException>(() => Render("{{ 'x' * 100000000 }}"));
        var loops = Assert.Throws<JinjaException>(() => Render("{% for i in range(1001) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"));
        Assert.That(loops!.Message, Does.Contain("loop iterations"));
        var deep = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse("{{ " + new string('(', 200_000) + "1" + new string(')', 200_000) + " }}"));
        Assert.That(deep!.Message, Does.Contain("nests too deeply"));
        Assert.That(Render("{{ 'a\r\nb\rc\n'.splitlines() }}"), Is.EqualTo("['a', 'b', 'c']"));
    }

    [Test]
    public void UndefinedChainsStayUndefined()
    {
        // Jinja2's default Undefined raises on m.missing.deeper; this interpreter keeps it undefined (ChainableUndefined).
        Assert.That(Render("{{ m.missing.deeper is defined }}[{{ m.missing.deeper }}]", "{\"m\": {}}"), Is.EqualTo("False[]"));
    }
}
