using System.ClientModel;
using System.Text;
using OpenAI;
using OpenAI.Chat;
using Pipeline.Actors;

namespace Pipeline.Host.Tests.Serve;

/// <summary>The official OpenAI .NET client pointed at the server.</summary>
[Collection(ServeCollection.Name)]
public sealed class OpenAiClientTests(ServeFixture fixture)
{
    private static ChatClient ClientFor(TestServer server, string key = "unused") =>
        new("ud-q2kxl", new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") });

    [Fact]
    public async Task The_official_client_streams_a_chat_with_usage()
    {
        await using var server = await fixture.StartAsync(new() { ["ApiKey"] = "sk-test" });
        fixture.Format.Enqueue(new([[new ReasoningDelta("Hmm.")], [new TextDelta("Hello")], [new TextDelta(" from Pipeline")]]));
        var client = ClientFor(server, "sk-test");
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in client.CompleteChatStreamingAsync(
                           [new SystemChatMessage("Be brief."), new UserChatMessage("Say hello")],
                           new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 20 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
                text.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        Assert.True(updates >= 4);
        Assert.Equal("Hello from Pipeline", text.ToString());
        Assert.Equal(ChatFinishReason.Stop, finish);
        Assert.NotNull(usage);
        Assert.Equal(3, usage.OutputTokenCount);
        Assert.True(usage.InputTokenCount > 0);
        Assert.Equal(1, usage.OutputTokenDetails.ReasoningTokenCount);
    }

    [Fact]
    public async Task The_official_client_gets_tool_calls_and_sends_results_back()
    {
        await using var server = await fixture.StartAsync();
        var client = ClientFor(server);
        var tool = ChatTool.CreateFunctionTool("get_time", "Current time in a city",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"""));
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 20, Tools = { tool } };
        List<OpenAI.Chat.ChatMessage> messages = [new UserChatMessage("What time is it in Tokyo?")];

        fixture.Format.Enqueue(new([[new ToolCallEvent(new ToolCall("call_t1", "get_time", "{\"city\":\"Tokyo\"}"))]]));
        ChatCompletion first = await client.CompleteChatAsync(messages, options);
        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("get_time", call.FunctionName);
        Assert.Equal("{\"city\":\"Tokyo\"}", call.FunctionArguments.ToString());

        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(call.Id, "09:30"));
        fixture.Format.Enqueue(new([[new TextDelta("It is 09:30 in Tokyo.")]]));
        ChatCompletion second = await client.CompleteChatAsync(messages, options);
        Assert.Equal("It is 09:30 in Tokyo.", second.Content[0].Text);
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount > 0);
    }
}
