using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Tests.Templates;

/// <summary>tests/fixtures/jinja/cases.jsonl: templates rendered by Python Jinja2 configured as transformers configures
/// it (see generate.py there). Output must match exactly; where Python raised, we must raise a TemplateException.</summary>
public class JinjaConformanceTests
{
    private static readonly Dictionary<string, JsonObject> Cases = TemplateFixtures
        .ReadJsonLines(Path.Combine(TemplateFixtures.JinjaFixtures, "cases.jsonl"))
        .ToDictionary(c => (string)c["name"]!);

    public static TheoryData<string> Names() => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(Names))]
    public void MatchesPythonJinja2(string name)
    {
        var c = Cases[name];
        string source = (string)c["template"]!;
        var variables = c["context"]!.AsObject().ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
        if (c["error"] is not null)
        {
            var error = Assert.Throws<TemplateException>(() => JinjaTemplate.Compile(source, name).Render(variables));
            Assert.False(string.IsNullOrWhiteSpace(error.Reason));
            return;
        }
        Assert.Equal((string)c["expected"]!, JinjaTemplate.Compile(source, name).Render(variables));
    }
}
