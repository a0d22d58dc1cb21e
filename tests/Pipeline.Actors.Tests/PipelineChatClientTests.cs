using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Pipeline.Actors.Client;
using Pipeline.Actors.Tests.Infrastructure;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatMessage = Pipeline.Actors.ChatMessage;

namespace Pipeline.Actors.Tests;

/// <summary>PipelineChatClient on the tiny model: updates, usage, conversation reuse, options and message mapping, DI.</summary>
public class PipelineChatClientTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    private static ChatOptions Sampled(int max = 6, long seed = 5) => new() { Temperature = 1.0f, TopK = 40, Seed = seed, MaxOutputTokens = max };

    [Fact]
    public async Task Streaming_updates_end_with_finish_reason_and_usage()
    {
        var (system, pipeline) = tiny.Start();
        using var _ = system;
        using var client = new PipelineChatClient(pipeline);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync([new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hello")], Sampled()))
            updates.Add(u);

        Assert.True(updates.Count >= 2);
        Assert.All(updates[..^1], u =>
        {
            Assert.Null(u.FinishReason);
            Assert.Single(u.Contents);
            Assert.True(u.Contents[0] is TextContent or TextReasoningContent);
        });
        var last = updates[^1];
        Assert.NotNull(last.FinishReason);
        var usage = Assert.IsType<UsageContent>(Assert.Single(last.Contents)).Details;
        Assert.True(usage.InputTokenCount > 5);
        Assert.Equal(0, usage.CachedInputTokenCount);
        Assert.InRange(usage.OutputTokenCount!.Value, 1, 6);
        Assert.Equal(usage.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);
        Assert.True((double)last.AdditionalProperties!["ttft_ms"]! > 0);
        Assert.All(updates, u =>
        {
            Assert.Equal(ChatRole.Assistant, u.Role);
            Assert.Equal(updates[0].ResponseId, u.ResponseId);
            Assert.Equal(updates[0].ConversationId, u.ConversationId);
            Assert.Equal(tiny.Model.Name, u.ModelId);
        });
    }

    [Fact]
    public async Task Resending_the_whole_history_continues_the_conversation_and_its_cache()
    {
        var (system, pipeline) = tiny.Start();
        using var _ = system;
        using var client = new PipelineChatClient(pipeline);
        List<AiChatMessage> history = [new(ChatRole.System, "You are a helpful assistant."), new(ChatRole.User, "What is the capital of France?")];
        var one = await client.GetResponseAsync(history, Sampled());
        Assert.NotNull(one.ConversationId);
        Assert.Equal(0, one.Usage!.CachedInputTokenCount);
        Assert.NotNull(one.FinishReason);

        history.AddMessages(one);
        history.Add(new(ChatRole.User, "And of Germany?"));
        var two = await client.GetResponseAsync(history, Sampled());
        Assert.Equal(one.ConversationId, two.ConversationId);
        Assert.True(two.Usage!.CachedInputTokenCount > one.Usage.InputTokenCount / 2, $"cached {two.Usage.CachedInputTokenCount}");
        Assert.Equal(["system", "user", "assistant", "user", "assistant"], (await pipeline.GetTranscriptAsync(two.ConversationId!)).Select(m => m.Role));

        // A history that does not extend a known conversation starts a new one.
        var other = await client.GetResponseAsync([new(ChatRole.User, "Something else")], Sampled());
        Assert.NotEqual(one.ConversationId, other.ConversationId);
        Assert.Equal(0, other.Usage!.CachedInputTokenCount);

        // With a ConversationId only the new message is sent.
        var three = await client.GetResponseAsync([new(ChatRole.User, "And of Japan?")], new ChatOptions { ConversationId = one.ConversationId, MaxOutputTokens = 3, Temperature = 0 });
        Assert.Equal(one.ConversationId, three.ConversationId);
        Assert.True(three.Usage!.CachedInputTokenCount > two.Usage.InputTokenCount / 2);
        Assert.Equal(7, (await pipeline.GetTranscriptAsync(one.ConversationId!)).Count);
    }

    [Fact]
    public async Task Same_seed_gives_the_same_text_as_the_PipelineClient_path()
    {
        var (system, pipeline) = tiny.Start();
        using var _ = system;
        using var client = new PipelineChatClient(pipeline);
        var options = new ChatOptions
        {
            Temperature = 1.0f,
            TopK = 0,
            TopP = 1,
            Seed = 77,
            MaxOutputTokens = 8,
            AdditionalProperties = new() { ["min_p"] = 0.02, ["reasoning_effort"] = "low" },
        };
        var response = await client.GetResponseAsync([new(ChatRole.User, "Tell me a story")], options);
        var direct = await pipeline.RunTurnAsync(new TurnRequest
        {
            SessionId = "direct-" + Guid.NewGuid().ToString("N"),
            Messages = [ChatMessage.FromUser("Tell me a story")],
            Options = new GenerationOptions { Temperature = 1.0f, TopK = 0, TopP = 1, MinP = 0.02f, Seed = 77, MaxNewTokens = 8, ReasoningEffort = "low" },
        });
        Assert.Equal(direct.Text, response.Text);
        Assert.Equal(direct.Finished.Usage.CompletionTokens, response.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Cancelling_throws_and_the_next_call_continues()
    {
        var (system, pipeline) = tiny.Start();
        using var _ = system;
        using var client = new PipelineChatClient(pipeline);
        using var cancel = new CancellationTokenSource();
        string? conversation = null;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync([new(ChatRole.User, "hello")], Sampled(200), cancel.Token))
            {
                conversation = u.ConversationId;
                cancel.Cancel();
            }
        });
        var next = await client.GetResponseAsync([new(ChatRole.User, "again")], new ChatOptions { ConversationId = conversation, MaxOutputTokens = 2 });
        Assert.Equal(conversation, next.ConversationId);
        Assert.True(next.Usage!.CachedInputTokenCount > 0);
    }

    [Fact]
    public async Task A_tool_round_trip_reaches_the_transcript_with_the_tools_declared()
    {
        var (system, pipeline) = tiny.Start();
        using var _ = system;
        using var client = new PipelineChatClient(pipeline);
        var weather = AIFunctionFactory.Create((string city) => $"sunny in {city}", "get_weather", "Current weather of a city");
        var options = Sampled(4);
        options.Tools = [weather];
        List<AiChatMessage> history =
        [
            new(ChatRole.User, "Weather in Paris?"),
            new(ChatRole.Assistant, [new FunctionCallContent("call_1", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris" })]),
            new(ChatRole.Tool, [new FunctionResultContent("call_1", "sunny in Paris")]),
        ];
        var response = await client.GetResponseAsync(history, options);
        var transcript = await pipeline.GetTranscriptAsync(response.ConversationId!);
        Assert.Equal(["user", "assistant", "tool", "assistant"], transcript.Select(m => m.Role));
        var call = Assert.Single(transcript[1].ToolCalls!);
        Assert.Equal(("call_1", "get_weather"), (call.Id, call.Name));
        Assert.Equal("Paris", JsonDocument.Parse(call.ArgumentsJson).RootElement.GetProperty("city").GetString());
        Assert.Equal(("call_1", "get_weather", "sunny in Paris"), (transcript[2].ToolCallId, transcript[2].Name, transcript[2].Content));
    }

    [Fact]
    public async Task Beyond_MaxConversations_the_oldest_started_conversation_is_ended_and_named_ones_are_kept()
    {
        var (system, pipeline) = tiny.Start();
        using var _ = system;
        using var client = new PipelineChatClient(pipeline, new PipelineChatClientOptions { MaxConversations = 1 });
        var named = await client.GetResponseAsync([new(ChatRole.User, "one")], new ChatOptions { ConversationId = "named", MaxOutputTokens = 2 });
        var first = await client.GetResponseAsync([new(ChatRole.User, "two")], Sampled(2));
        var second = await client.GetResponseAsync([new(ChatRole.User, "three")], Sampled(2));
        Assert.NotEqual(first.ConversationId, second.ConversationId);
        Assert.Equal(2, (await pipeline.GetTranscriptAsync("named")).Count);
        // The end is told, not asked: give it a moment.
        int left = -1;
        for (int i = 0; i < 100 && left != 0; i++, await Task.Delay(20))
            left = (await pipeline.GetTranscriptAsync(first.ConversationId!)).Count;
        Assert.Equal(0, left);
        Assert.Equal(2, (await pipeline.GetTranscriptAsync(second.ConversationId!)).Count);
    }

    [Fact]
    public void Options_map_to_generation_options()
    {
        var weather = AIFunctionFactory.Create((string city) => city, "get_weather", "Weather of a city");
        var options = new ChatOptions
        {
            Temperature = 0.6f,
            TopP = 0.95f,
            TopK = 64,
            MaxOutputTokens = 33,
            Seed = 11,
            StopSequences = ["END"],
            Tools = [weather],
            AdditionalProperties = new() { ["min_p"] = "0.05", ["reasoning_effort"] = "High" },
        };
        var mapped = MessageMapping.ToGenerationOptions(options, 100);
        Assert.Equal((0.6f, 0.95f, 64, 33, 11UL), (mapped.Temperature, mapped.TopP, mapped.TopK, mapped.MaxNewTokens, mapped.Seed));
        Assert.Equal(0.05f, mapped.MinP);
        Assert.Equal("high", mapped.ReasoningEffort);
        Assert.Equal(["END"], mapped.Stop!);
        var tool = JsonDocument.Parse(mapped.ToolsJson!).RootElement[0];
        Assert.Equal("function", tool.GetProperty("type").GetString());
        Assert.Equal("get_weather", tool.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("Weather of a city", tool.GetProperty("function").GetProperty("description").GetString());
        Assert.Equal("string", tool.GetProperty("function").GetProperty("parameters").GetProperty("properties").GetProperty("city").GetProperty("type").GetString());

        Assert.Equal(100, MessageMapping.ToGenerationOptions(null, 100).MaxNewTokens);
        Assert.Equal("medium", MessageMapping.ToGenerationOptions(new ChatOptions { Reasoning = new ReasoningOptions { Effort = ReasoningEffort.Medium } }, 1).ReasoningEffort);
        Assert.Null(MessageMapping.ToGenerationOptions(new ChatOptions { Tools = [weather], ToolMode = ChatToolMode.None }, 1).ToolsJson);
        Assert.Contains("min_p", Assert.Throws<ArgumentException>(() => MessageMapping.ToGenerationOptions(new ChatOptions { AdditionalProperties = new() { ["min_p"] = "lots" } }, 1)).Message);
        Assert.Contains("reasoning_effort", Assert.Throws<ArgumentException>(() => MessageMapping.ToGenerationOptions(new ChatOptions { AdditionalProperties = new() { ["reasoning_effort"] = "max" } }, 1)).Message);
        Assert.Contains("MaxOutputTokens", Assert.Throws<ArgumentException>(() => MessageMapping.ToGenerationOptions(new ChatOptions { MaxOutputTokens = 0 }, 1)).Message);
    }

    [Fact]
    public void Messages_map_images_reasoning_instructions_and_reject_unknown_content()
    {
        var mapped = MessageMapping.ToPipeline(
        [
            new(ChatRole.User, [new TextContent("What is "), new TextContent("this?"), new DataContent(new byte[] { 1, 2, 3 }, "image/png"), new UriContent("https://x/y.jpg", "image/jpeg")]),
            new(ChatRole.Assistant, [new TextReasoningContent("hmm"), new TextContent("A cat.")]),
        ], instructions: "Be brief.");
        Assert.Equal(["system", "user", "assistant"], mapped.Select(m => m.Role));
        Assert.Equal("Be brief.", mapped[0].Content);
        Assert.Equal("What is this?", mapped[1].Content);
        Assert.Equal(2, mapped[1].Images!.Count);
        Assert.Equal(("image/png", 3), (mapped[1].Images![0].MediaType, mapped[1].Images![0].Data!.Length));
        Assert.Equal("https://x/y.jpg", mapped[1].Images![1].Url);
        Assert.Equal(("A cat.", "hmm"), (mapped[2].Content, mapped[2].Reasoning));

        var merged = MessageMapping.ToPipeline([new(ChatRole.System, "Sys."), new(ChatRole.User, "Hi")], "More.");
        Assert.Equal("Sys.\n\nMore.", merged[0].Content);

        var error = Assert.Throws<ArgumentException>(() => MessageMapping.ToPipeline([new(ChatRole.User, [new DataContent(new byte[] { 1 }, "audio/wav")])], null));
        Assert.Contains("audio/wav", error.Message);
        Assert.Contains("messages[0]", error.Message);
    }

    [Fact]
    public async Task AddPipelineChatClient_registers_an_IChatClient_in_a_generic_host()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddPipelineChatClient(o =>
        {
            o.ModelDirectory = TestPaths.TinyModel;
            o.Threads = 1;
            o.DefaultMaxOutputTokens = 3;
        }, actors => actors.ActorSystemName = "chat-client-host");
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<IChatClient>();
            Assert.Same(host.Services.GetRequiredService<PipelineChatClient>(), client);
            Assert.Equal("pipeline", client.GetService<ChatClientMetadata>()!.ProviderName);
            var response = await client.GetResponseAsync("Hi", new ChatOptions { Temperature = 0 }).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.InRange(response.Usage!.OutputTokenCount!.Value, 1, 3);
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
