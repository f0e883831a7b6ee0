// Owns: rendering the real chat templates of LlamaCppTemplateCases with the Jinja interpreter and comparing with
// llama.cpp's expected strings (the oracle is llama.cpp's test file, not this code).
using Engine.Tokenizers.Jinja;

namespace Engine.Tokenizers.Tests.Jinja;

public class LlamaCppTemplateTests
{
    private static IEnumerable<TemplateCase> Cases() => LlamaCppTemplateCases.All();

    internal static JinjaList Messages(bool mergeSystem)
    {
        var list = new JinjaList();
        string? pendingSystem = null;
        foreach (var (role, content) in LlamaCppTemplateCases.Conversation)
        {
            if (mergeSystem && role == "system") { pendingSystem = content; continue; }
            var text = pendingSystem != null && role == "user" ? pendingSystem + "\n" + content : content;
            if (role == "user") pendingSystem = null;
            list.Add(new JinjaDict { ["role"] = role, ["content"] = text });
        }
        return list;
    }

    [TestCaseSource(nameof(Cases))]
    public void RendersAsLlamaCppExpects(TemplateCase c)
    {
        var template = JinjaTemplate.Parse(c.Template);
        var output = template.Render(new Dictionary<string, object?>
        {
            ["messages"] = Messages(c.MergeSystem),
            ["bos_token"] = c.Bos,
            ["eos_token"] = c.Eos,
            ["add_generation_prompt"] = true,
        });
        Assert.That(output, Is.EqualTo(c.Expected));
    }
}
