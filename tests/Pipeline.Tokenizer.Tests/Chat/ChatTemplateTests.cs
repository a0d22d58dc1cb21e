using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Chat;
using Pipeline.Tokenizer.Templates;
using Pipeline.Tokenizer.Tests.Templates;
using GemmaTokenizer = Pipeline.Tokenizer.Tokenizer;

namespace Pipeline.Tokenizer.Tests.Chat;

public class ChatTemplateTests
{
    private static readonly Dictionary<string, JsonObject> Cases = TemplateFixtures
        .ReadJsonLines(Path.Combine(TemplateFixtures.TokenizerFixtures, "dev", "chat.jsonl"))
        .ToDictionary(c => (string)c["id"]!);

    public static TheoryData<string> CaseIds() => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void EmbeddedGemma4RendersAndTokenizesEveryFixtureExactly(string id)
    {
        var c = Cases[id];
        var request = ChatRequest.FromJson(c);
        string rendered = ChatTemplate.Gemma4.Render(request);
        Assert.Equal((string)c["rendered"]!, rendered);
        int[] expectedIds = [.. c["ids"]!.AsArray().Select(n => (int)n!)];
        Assert.Equal(expectedIds, GemmaTokenizer.LoadGemma4().Encode(rendered, addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void TemplateFromModelFolderMatchesTheFixtures(string id)
    {
        // tests/fixtures/tokenizer has chat_template.jinja and tokenizer_config.json (eos_token <turn|>, unused by the template).
        var template = ChatTemplate.FromModelPath(TemplateFixtures.TokenizerFixtures)!;
        Assert.EndsWith("chat_template.jinja", template.Origin);
        Assert.Equal("<turn|>", template.SpecialTokens["eos_token"]);
        Assert.Equal((string)Cases[id]["rendered"]!, template.Render(ChatRequest.FromJson(Cases[id])));
    }

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void InterleavedGemma4TemplateMatchesPythonJinja2(string id)
    {
        var expected = TemplateFixtures.ReadJsonLines(Path.Combine(TemplateFixtures.JinjaFixtures, "gemma4_interleaved.jsonl"))
            .Single(r => (string)r["id"]! == id);
        var template = ChatTemplate.FromSource(
            File.ReadAllText(Path.Combine(TemplateFixtures.TokenizerFixtures, "chat_template.interleaved.jinja")), "interleaved");
        Assert.Equal((string)expected["rendered"]!, template.Render(ChatRequest.FromJson(Cases[id])));
    }

    [Fact]
    public void TypedMessagesRenderLikeTheirJson()
    {
        var tools = Cases["tool_full_cycle"]["tools"]!.AsArray().Select(t => (JsonObject)t!).ToList();
        var request = new ChatRequest
        {
            Messages =
            [
                ChatMessage.System("You are terse."),
                ChatMessage.User(new TextPart("What is in "), MediaPart.Image("data:image/png;base64,AAAA"), new TextPart(" this?")),
                ChatMessage.Assistant("", [new ChatToolCall("get_weather", new JsonObject { ["city"] = "Paris", ["days"] = 3 }, "call_1")],
                    reasoning: "I should look it up."),
                ChatMessage.Tool("call_1", "{\"temperature\": 18}"),
            ],
            Tools = tools,
            AddGenerationPrompt = true,
            EnableThinking = true,
        };
        string typed = ChatTemplate.Gemma4.Render(request);
        var json = new JsonObject
        {
            ["messages"] = new JsonArray([.. request.Messages.Select(m => (JsonNode)m.ToJson())]),
            ["tools"] = new JsonArray([.. tools.Select(t => t.DeepClone())]),
            ["add_generation_prompt"] = true,
            ["enable_thinking"] = true,
        };
        Assert.Equal(typed, ChatTemplate.Gemma4.Render(ChatRequest.FromJson(json)));
        Assert.Contains("<|turn>user\nWhat is in<|image|>this?<turn|>", typed);
        Assert.Contains("<|channel>thought\nI should look it up.\n<channel|><|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:3}<tool_call|>", typed);
        Assert.Contains("<|tool_response>response:get_weather{value:<|\"|>{\"temperature\": 18}<|\"|>}<tool_response|>", typed);
        Assert.StartsWith("<bos><|turn>system\n<|think|>\nYou are terse.<|tool>declaration:get_weather{", typed);
    }

    [Theory]
    [InlineData(null, null, false)]
    [InlineData(null, ReasoningEffort.None, false)]
    [InlineData(null, ReasoningEffort.Low, false)]
    [InlineData(null, ReasoningEffort.Medium, true)]
    [InlineData(null, ReasoningEffort.High, true)]
    [InlineData(false, ReasoningEffort.High, false)]
    [InlineData(true, ReasoningEffort.Low, true)]
    public void ReasoningEffortMapsToTheThinkingSwitch(bool? enableThinking, ReasoningEffort? effort, bool thinking)
    {
        var request = new ChatRequest
        {
            Messages = [ChatMessage.User("Hi")],
            AddGenerationPrompt = true,
            EnableThinking = enableThinking,
            ReasoningEffort = effort,
        };
        Assert.Equal(thinking, request.ThinkingEnabled);
        string rendered = ChatTemplate.Gemma4.Render(request);
        Assert.Equal(thinking, rendered.Contains("<|think|>"));
        Assert.Equal(!thinking, rendered.EndsWith("<|turn>model\n<|channel>thought\n<channel|>"));
    }

    [Fact]
    public void ReasoningEffortIsReadFromJsonAndPassedToTheTemplate()
    {
        var request = ChatRequest.FromJson(JsonNode.Parse("""{"messages":[{"role":"user","content":"x"}],"reasoning_effort":"medium","add_generation_prompt":true}"""));
        Assert.Equal(ReasoningEffort.Medium, request.ReasoningEffort);
        Assert.True(request.ThinkingEnabled);
        var echo = ChatTemplate.FromSource("{{ reasoning_effort }}|{{ enable_thinking }}|{{ custom }}");
        Assert.Equal("medium|True|42", echo.Render(request with { TemplateVariables = new Dictionary<string, JsonNode?> { ["custom"] = 42 } }));
    }

    [Theory]
    [InlineData("""{"chat_template_kwargs": {"enable_thinking": true}}""", true)]
    [InlineData("""{"chat_template_kwargs": {"enable_thinking": true}, "enable_thinking": false}""", false)]
    [InlineData("""{"chat_template_kwargs": {"other": 1}}""", false)]
    public void EnableThinkingMayComeFromChatTemplateKwargs(string fields, bool thinking)
    {
        var json = JsonNode.Parse(fields)!.AsObject();
        json["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "x" });
        var request = ChatRequest.FromJson(json);
        Assert.Equal(thinking, request.ThinkingEnabled);
        Assert.False(request.TemplateVariables!.ContainsKey("enable_thinking"));
        Assert.Equal(thinking, ChatTemplate.Gemma4.Render(request).Contains("<|think|>"));
    }

    [Theory]
    [InlineData("""{"messages": 5}""", "messages")]
    [InlineData("""{"messages": [{"content": "x"}]}""", "messages[0].role")]
    [InlineData("""{"messages": [{"role": "user", "content": 5}]}""", "messages[0].content")]
    [InlineData("""{"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}""", "messages[0].content[0].type")]
    [InlineData("""{"messages": [{"role": "user", "content": [{"type": "text"}]}]}""", "messages[0].content[0].text")]
    [InlineData("""{"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}]}""", "messages[0].tool_calls[0].function.name")]
    [InlineData("""{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}]}""", "messages[0].tool_calls[0].function.arguments")]
    [InlineData("""{"messages": [], "add_generation_prompt": "yes"}""", "add_generation_prompt")]
    [InlineData("""{"messages": [], "reasoning_effort": "extreme"}""", "reasoning_effort")]
    [InlineData("""{"messages": [], "tools": [1]}""", "tools[0]")]
    public void MalformedRequestsNameTheField(string json, string field)
    {
        var error = Assert.Throws<InvalidChatRequestException>(() => ChatRequest.FromJson(JsonNode.Parse(json)));
        Assert.Equal(field, error.Field);
        Assert.StartsWith(field + ":", error.Message);
    }

    [Fact]
    public void OpenAiContentPartsAreUnderstood()
    {
        var message = ChatMessage.FromJson(JsonNode.Parse("""
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
             {"type": "input_audio", "input_audio": {"data": "..."}}, {"type": "video", "url": "v.mp4"}], "x_custom": [1]}
            """));
        Assert.Equal(["text", "image", "audio", "video"], message.Parts!.Select(p => p.Type));
        Assert.Equal("http://x/y.png", ((MediaPart)message.Parts![1]).Url);
        Assert.Equal("[1]", message.ToJson()["x_custom"]!.ToJsonString());
        Assert.Equal("<bos><|turn>user\na<|image|><|audio|><|video|><turn|>\n",
            ChatTemplate.Gemma4.Render(new ChatRequest { Messages = [message], AddGenerationPrompt = false }));
    }

    [Fact]
    public void ModelFolderTemplatesAreFoundLikeTransformersFindsThem()
    {
        string dir = Directory.CreateTempSubdirectory("chat-template-").FullName;
        try
        {
            var request = new ChatRequest { Messages = [ChatMessage.User("hi")], AddGenerationPrompt = false };
            Assert.Null(ChatTemplate.FromModelPath(dir));
            Assert.Same(ChatTemplate.Gemma4, ChatTemplate.ForModel(dir));

            // tokenizer_config.json: named templates, tool_use chosen when tools are given; AddedToken-style bos.
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                 "chat_template": [{"name": "default", "template": "D{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"},
                                   {"name": "tool_use", "template": "T{{ tools | length }}"}]}
                """);
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{}");
            var fromConfig = ChatTemplate.FromModelPath(Path.Combine(dir, "tokenizer.json"))!;
            Assert.Equal("D<s>hi</s>", fromConfig.Render(request));
            Assert.Equal("T1", fromConfig.Render(request with { Tools = [new JsonObject { ["type"] = "function" }] }));

            // chat_template.json beats tokenizer_config.json; chat_template.jinja beats both.
            File.WriteAllText(Path.Combine(dir, "chat_template.json"), """{"chat_template": "J{{ messages | length }}"}""");
            Assert.Equal("J1", ChatTemplate.FromModelPath(dir)!.Render(request));
            File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "{{ bos_token }}jinja\n");
            Assert.Equal("<s>jinja", ChatTemplate.FromModelPath(dir)!.Render(request));

            File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "{% if %}");
            Assert.Throws<TemplateException>(() => ChatTemplate.FromModelPath(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TemplateErrorsSurfaceAsTemplateExceptions()
    {
        var strict = ChatTemplate.FromSource("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok");
        var error = Assert.Throws<TemplateException>(() =>
            strict.Render(new ChatRequest { Messages = [ChatMessage.Assistant("x")], AddGenerationPrompt = true }));
        Assert.True(error.RaisedByTemplate);
        Assert.Equal("first message must be from the user", error.Reason);
    }
}
