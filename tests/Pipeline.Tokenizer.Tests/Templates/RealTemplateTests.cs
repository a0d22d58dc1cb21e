using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Tests.Templates;

/// <summary>Published chat templates (tests/fixtures/jinja/templates, MIT) rendered over several conversations and
/// compared with Python Jinja2 under transformers' settings (templates.jsonl, made by generate_templates.py).</summary>
public class RealTemplateTests
{
    private static readonly List<JsonObject> Renders =
        [.. TemplateFixtures.ReadJsonLines(Path.Combine(TemplateFixtures.JinjaFixtures, "templates.jsonl"))];

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var r in Renders)
            data.Add((string)r["template"]!, (string)r["conversation"]!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesPythonJinja2(string template, string conversation)
    {
        var r = Renders.Single(x => (string)x["template"]! == template && (string)x["conversation"]! == conversation);
        var compiled = JinjaTemplate.Compile(File.ReadAllText(Path.Combine(TemplateFixtures.JinjaFixtures, "templates", template)), template);
        var variables = r["context"]!.AsObject().ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
        if (r["error"] is not null)
        {
            var error = Assert.Throws<TemplateException>(() => compiled.Render(variables));
            Assert.True(error.RaisedByTemplate, error.Message);
            return;
        }
        Assert.Equal((string)r["expected"]!, compiled.Render(variables));
    }
}
