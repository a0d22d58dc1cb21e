using System.Text;
using System.Text.Json;
using Pipeline.Actors;

namespace Pipeline.Host.Tests.Serve;

/// <summary>POST /v1/chat/completions against a real Kestrel with the tiny model: answers, streams, reasoning, tools, reuse.</summary>
[Collection(ServeCollection.Name)]
public sealed class ChatCompletionTests(ServeFixture fixture)
{
    private static ChatEvent[] Text(string text) => [new TextDelta(text)];

    private static ChatEvent[] Thought(string text) => [new ReasoningDelta(text)];

    [Fact]
    public async Task NonStreaming_answers_with_usage_and_timings()
    {
        await using var server = await fixture.StartAsync();
        var (body, response) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("Hello there")).With("max_tokens", 5));

        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", body.GetProperty("id").GetString());
        Assert.Equal("ud-q2kxl", body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Contains(choice.GetProperty("finish_reason").GetString(), new[] { "length", "stop", "tool_calls" });
        var usage = body.GetProperty("usage");
        int prompt = usage.GetProperty("prompt_tokens").GetInt32();
        int completion = usage.GetProperty("completion_tokens").GetInt32();
        Assert.Equal(fixture.Model.Tokenizer.Encode(fixture.Model.ChatFormat.Render([ChatMessage.FromUser("Hello there")], new(null, null, null))).Length, prompt);
        Assert.InRange(completion, 1, 5);
        Assert.Equal(prompt + completion, usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal(0, usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        var timings = body.GetProperty("timings");
        Assert.Equal(prompt, timings.GetProperty("prompt_n").GetInt32());
        Assert.Equal(completion, timings.GetProperty("predicted_n").GetInt32());
        Assert.True(timings.GetProperty("prompt_per_second").GetDouble() > 0);
        Assert.True(timings.GetProperty("ttft_ms").GetDouble() > 0);
        Assert.StartsWith("chat-", response.Headers.GetValues("X-Session-Id").Single());
    }

    [Fact]
    public async Task Streaming_sends_parseable_chunks_then_finish_usage_and_done()
    {
        await using var server = await fixture.StartAsync();
        fixture.Format.Enqueue(new([Thought("Let me think."), Text("Hello"), Text(" world")]));
        var response = await server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(
            Bodies.Chat(Bodies.User("Say hello")).With("max_tokens", 20).With("stream", true).With("stream_options", new { include_usage = true })));
        Assert.Equal(200, (int)response.StatusCode);
        var events = await TestServer.ReadEventsAsync(response);

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        string id = chunks[0].GetProperty("id").GetString()!;
        Assert.All(chunks, c =>
        {
            Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString());
            Assert.Equal(id, c.GetProperty("id").GetString());
        });
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());

        var content = new StringBuilder();
        var reasoning = new StringBuilder();
        string? finish = null;
        foreach (var chunk in chunks[..^1])
        {
            var choice = chunk.GetProperty("choices")[0];
            var delta = choice.GetProperty("delta");
            if (delta.TryGetProperty("content", out var c))
                content.Append(c.GetString());
            if (delta.TryGetProperty("reasoning_content", out var r))
                reasoning.Append(r.GetString());
            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String)
            {
                Assert.Null(finish);
                finish = choice.GetProperty("finish_reason").GetString();
                Assert.True(chunk.GetProperty("timings").GetProperty("predicted_n").GetInt32() == 3);
            }
        }
        Assert.Equal("Hello world", content.ToString());
        Assert.Equal("Let me think.", reasoning.ToString());
        Assert.Equal("stop", finish);

        // The usage chunk comes last, with no choices.
        var last = chunks[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        var usage = last.GetProperty("usage");
        Assert.Equal(3, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(1, usage.GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());
        Assert.Equal(0, usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() > 0);
        Assert.True(last.TryGetProperty("timings", out _));
    }

    [Fact]
    public async Task Streaming_without_include_usage_sends_no_usage_chunk()
    {
        await using var server = await fixture.StartAsync();
        var response = await server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("Hi")).With("max_tokens", 3).With("stream", true)));
        var events = await TestServer.ReadEventsAsync(response);
        Assert.Equal("[DONE]", events[^1]);
        Assert.All(events[..^1], e => Assert.False(JsonDocument.Parse(e).RootElement.TryGetProperty("usage", out _)));
        Assert.Equal("length", JsonDocument.Parse(events[^2]).RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Reasoning_and_answer_are_split_in_the_message()
    {
        await using var server = await fixture.StartAsync();
        fixture.Format.Enqueue(new([Thought("Paris is the capital"), Thought(" of France."), Text("Paris.")]));
        var (body, _) = await server.PostJsonAsync("/v1/chat/completions",
            Bodies.Chat(Bodies.User("Capital of France?")).With("max_tokens", 20).With("reasoning_effort", "high"));
        var message = body.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("Paris.", message.GetProperty("content").GetString());
        Assert.Equal("Paris is the capital of France.", message.GetProperty("reasoning_content").GetString());
        Assert.Equal(2, body.GetProperty("usage").GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());
    }

    [Fact]
    public async Task Tool_call_round_trip_reuses_the_session()
    {
        await using var server = await fixture.StartAsync();
        var tools = new[]
        {
            new
            {
                type = "function",
                function = new
                {
                    name = "get_weather",
                    description = "Weather of a city",
                    parameters = new { type = "object", properties = new { city = new { type = "string" } }, required = new[] { "city" } },
                },
            },
        };
        fixture.Format.Enqueue(new([[new ToolCallEvent(new ToolCall("call_abc", "get_weather", "{\"city\":\"Paris\"}"))]]));
        var user = Bodies.User("Weather in Paris?");
        var (first, firstResponse) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(user).With("tools", tools).With("max_tokens", 20));
        var choice = first.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var call = choice.GetProperty("message").GetProperty("tool_calls")[0];
        Assert.Equal("call_abc", call.GetProperty("id").GetString());
        Assert.Equal("function", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("{\"city\":\"Paris\"}", call.GetProperty("function").GetProperty("arguments").GetString());

        // The client sends the call back with the tool's result, as OpenAI clients do.
        var assistant = new { role = "assistant", content = (string?)null, tool_calls = new[] { new { id = "call_abc", type = "function", function = new { name = "get_weather", arguments = "{\"city\":\"Paris\"}" } } } };
        var result = new { role = "tool", tool_call_id = "call_abc", content = "sunny, 21 C" };
        fixture.Format.Enqueue(new([Text("It is sunny.")]));
        var (second, secondResponse) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(user, assistant, result).With("tools", tools).With("max_tokens", 20));
        Assert.Equal("It is sunny.", second.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("stop", second.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.True(second.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() > 0);
        Assert.Equal(firstResponse.Headers.GetValues("X-Session-Id").Single(), secondResponse.Headers.GetValues("X-Session-Id").Single());

        // The template saw the tool's result.
        var (template, _) = await server.PostJsonAsync("/apply-template", Bodies.Chat(user, assistant, result).With("tools", tools));
        Assert.Contains("sunny, 21 C", template.GetProperty("prompt").GetString());
        Assert.Contains("get_weather", template.GetProperty("prompt").GetString());
    }

    [Fact]
    public async Task Streamed_tool_call_arrives_as_a_delta()
    {
        await using var server = await fixture.StartAsync();
        fixture.Format.Enqueue(new([Text("Checking."), [new ToolCallEvent(new ToolCall("call_1", "lookup", "{\"q\":\"x\"}"))]]));
        var tools = new[] { new { type = "function", function = new { name = "lookup", parameters = new { type = "object" } } } };
        var response = await server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(
            Bodies.Chat(Bodies.User("Look it up")).With("tools", tools).With("tool_choice", "auto").With("stream", true).With("max_tokens", 20)));
        var chunks = (await TestServer.ReadEventsAsync(response))[..^1].Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0]).ToList();
        var call = chunks.Single(c => c.GetProperty("delta").TryGetProperty("tool_calls", out _)).GetProperty("delta").GetProperty("tool_calls")[0];
        Assert.Equal(0, call.GetProperty("index").GetInt32());
        Assert.Equal("call_1", call.GetProperty("id").GetString());
        Assert.Equal("lookup", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("{\"q\":\"x\"}", call.GetProperty("function").GetProperty("arguments").GetString());
        Assert.Equal("tool_calls", chunks[^1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_conversation_that_extends_an_earlier_one_reuses_its_cache()
    {
        await using var server = await fixture.StartAsync();
        var system = new { role = "system", content = "You are a helpful assistant. Be concise." };
        fixture.Format.Enqueue(new([Text("Paris.")]));
        var (first, firstResponse) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(system, Bodies.User("Capital of France?")).With("max_tokens", 20));
        string answer = first.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal("Paris.", answer);
        int firstPrompt = first.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();

        var (second, secondResponse) = await server.PostJsonAsync("/v1/chat/completions",
            Bodies.Chat(system, Bodies.User("Capital of France?"), new { role = "assistant", content = answer }, Bodies.User("And of Germany?")));
        int cached = second.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
        // The whole first turn up to the template's rendering of the answer is reused.
        Assert.InRange(cached, firstPrompt / 2, second.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() - 1);
        Assert.Equal(cached, second.GetProperty("timings").GetProperty("cache_n").GetInt32());
        Assert.Equal(firstResponse.Headers.GetValues("X-Session-Id").Single(), secondResponse.Headers.GetValues("X-Session-Id").Single());

        // A different conversation gets a session of its own.
        var (other, otherResponse) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("Something else entirely")));
        Assert.Equal(0, other.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        Assert.NotEqual(firstResponse.Headers.GetValues("X-Session-Id").Single(), otherResponse.Headers.GetValues("X-Session-Id").Single());
    }

    [Fact]
    public async Task An_explicit_session_id_pins_the_session_by_header_or_body()
    {
        await using var server = await fixture.StartAsync();
        fixture.Format.Enqueue(new([Text("One.")]));
        var (first, response) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("Count with me")), sessionId: "pinned-1");
        Assert.Equal("pinned-1", response.Headers.GetValues("X-Session-Id").Single());

        var (second, _) = await server.PostJsonAsync("/v1/chat/completions",
            Bodies.Chat(Bodies.User("Count with me"), new { role = "assistant", content = "One." }, Bodies.User("Next")).With("session_id", "pinned-1"));
        Assert.True(second.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() > 0);

        // Messages that do not extend the session's conversation start it over.
        var (third, _) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("A new topic")), sessionId: "pinned-1");
        Assert.Equal(0, third.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
    }
}
