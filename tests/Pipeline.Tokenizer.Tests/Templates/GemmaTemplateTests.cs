using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Tests.Templates;

/// <summary>The real Gemma-4 chat template rendered by the Jinja interpreter directly (no chat API in between).</summary>
public class GemmaTemplateTests
{
    private static readonly JinjaTemplate Gemma = JinjaTemplate.Compile(File.ReadAllText(TemplateFixtures.GemmaTemplatePath), "chat_template.jinja");

    public static TheoryData<string> CaseIds() =>
        [.. TemplateFixtures.ReadJsonLines(Path.Combine(TemplateFixtures.TokenizerFixtures, "dev", "chat.jsonl")).Select(c => (string)c["id"]!)];

    private static JsonObject Case(string id) =>
        TemplateFixtures.ReadJsonLines(Path.Combine(TemplateFixtures.TokenizerFixtures, "dev", "chat.jsonl")).Single(c => (string)c["id"]! == id);

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void RendersLikeTransformers(string id)
    {
        var c = Case(id);
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = c["messages"],
            ["add_generation_prompt"] = c["add_generation_prompt"],
            ["enable_thinking"] = c["enable_thinking"],
            ["bos_token"] = "<bos>",
            ["eos_token"] = "<eos>",
        };
        if (c["tools"] is JsonNode tools)
            variables["tools"] = tools;
        Assert.Equal((string)c["rendered"]!, Gemma.Render(variables));
    }
}
