using System.Net;
using System.Text.Json;
using Pipeline.Actors;
using Pipeline.Host.Serve;

namespace Pipeline.Host.Tests.Serve;

/// <summary>What the server refuses, each with OpenAI's error object: 400 with the JSON path, 413, 401, 429.</summary>
[Collection(ServeCollection.Name)]
public sealed class ServeErrorTests(ServeFixture fixture)
{
    private const string Hi = """{"role":"user","content":"Hi"}""";

    public static TheoryData<string, string, string> BadBodies => new()
    {
        { "{\"messages\": [", "$.messages[0]", "invalid JSON" },
        { "not json", "$", "invalid JSON" },
        { "[1, 2]", "$", "invalid JSON" },
        { $$$"""{"messages":[{{{Hi}}}],"temprature":0.5}""", "$.temprature", "temprature" },
        { $$$"""{"messages":[{{{Hi}}}],"temperature":"hot"}""", "$.temperature", "invalid JSON" },
        { $$$"""{"messages":[{{{Hi}}}],"max_tokens":1.5}""", "$.max_tokens", "invalid JSON" },
        { """{"messages":[{"role":"user","content":"Hi","colour":"red"}]}""", "$.messages[0].colour", "colour" },
        { """{"messages":[{"role":7,"content":"Hi"}]}""", "$.messages[0].role", "invalid JSON" },
        { """{"messages":[]}""", "$.messages", "non-empty" },
        { """{"model":"x"}""", "$.messages", "non-empty" },
        { """{"messages":[{"role":"wizard","content":"Hi"}]}""", "$.messages[0].role", "wizard" },
        { """{"messages":[{"role":"user","content":42}]}""", "$.messages[0].content", "content must be" },
        { """{"messages":[{"role":"user","content":[{"type":"text","text":"Look"},{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}]}""", "$.messages[0].content[1].image_url.url", "data: URI" },
        { """{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,!!!"}}]}]}""", "$.messages[0].content[0].image_url.url", "base64" },
        { """{"messages":[{"role":"user","content":[{"type":"audio","data":"x"}]}]}""", "$.messages[0].content[0].type", "audio" },
        { """{"messages":[{"role":"tool","content":"42"}]}""", "$.messages[0].tool_call_id", "tool_call_id" },
        { """{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}, {"role":"user","content":"Hi"}]}""", "$.messages[0].tool_calls[0].function.arguments", "not JSON" },
        { $$$"""{"messages":[{{{Hi}}}],"stop":[1]}""", "$.stop[0]", "strings" },
        { $$$"""{"messages":[{{{Hi}}}],"reasoning_effort":"extreme"}""", "$.reasoning_effort", "extreme" },
        { $$$"""{"messages":[{{{Hi}}}],"top_p":0}""", "$.top_p", "top_p" },
        { $$$"""{"messages":[{{{Hi}}}],"max_tokens":0}""", "$.max_tokens", "max_tokens" },
        { $$$"""{"messages":[{{{Hi}}}],"n":2}""", "$.n", "one choice" },
        { $$$"""{"messages":[{{{Hi}}}],"tools":{"type":"function"}}""", "$.tools", "array" },
        { $$$"""{"messages":[{{{Hi}}}],"tools":[{"type":"function","function":{}}]}""", "$.tools[0].function.name", "name" },
        { $$$"""{"messages":[{{{Hi}}}],"tool_choice":"sometimes"}""", "$.tool_choice", "sometimes" },
        { $$$"""{"messages":[{{{Hi}}}],"stream_options":{"include_usage":"yes"}}""", "$.stream_options.include_usage", "invalid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Malformed_requests_are_400_naming_the_json_path(string body, string path, string mentions)
    {
        var server = await fixture.SharedAsync();
        var response = await server.PostAsync("/v1/chat/completions", body);
        var error = await ServeAssert.ErrorOf(response, HttpStatusCode.BadRequest);
        Assert.Equal(path, error.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains(mentions, error.GetProperty("message").GetString());
        Assert.Equal(0, server.Get<ConversationRouter>().Count);   // nothing reached the pipeline
    }

    [Fact]
    public async Task A_prompt_over_the_context_limit_is_400_naming_both_numbers()
    {
        await using var server = await fixture.StartAsync(new() { ["Hocon"] = "pipeline.max-context = 64" });
        string words = string.Join(' ', Enumerable.Repeat("word", 100));
        var body = JsonSerializer.Serialize(Bodies.Chat(Bodies.User(words)));
        var error = await ServeAssert.ErrorOf(await server.PostAsync("/v1/chat/completions", body), HttpStatusCode.BadRequest);
        int tokens = fixture.Model.Tokenizer.Encode(fixture.Model.ChatFormat.Render([ChatMessage.FromUser(words)], new(null, null, null))).Length;
        string message = error.GetProperty("message").GetString()!;
        Assert.Contains($"{tokens} tokens", message);
        Assert.Contains("context limit of 64 tokens", message);
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());

        // A short prompt still fits, and the answer stops at the limit instead of failing.
        var (ok, _) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("Hi")).With("max_tokens", null));
        var usage = ok.GetProperty("usage");
        Assert.Equal(64, usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", ok.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_body_over_the_size_limit_is_413(bool chunked)
    {
        await using var server = await fixture.StartAsync(new() { ["MaxBody"] = "2048" });
        string body = JsonSerializer.Serialize(Bodies.Chat(Bodies.User(new string('a', 4000))));
        // A raw socket sends the whole request before reading, so the server's early answer cannot
        // turn into a broken pipe on the client's side. Chunked: no Content-Length, the limit holds as the body is read.
        var (status, text) = await RawPostAsync(server.Address, "/v1/chat/completions", body, chunked);
        Assert.True(status == 413, $"expected 413, got {status}: {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Contains("2048", error.GetProperty("message").GetString());
        Assert.Equal("body_too_large", error.GetProperty("code").GetString());
    }

    private static async Task<(int Status, string Body)> RawPostAsync(Uri address, string path, string body, bool chunked)
    {
        using var socket = new System.Net.Sockets.TcpClient();
        await socket.ConnectAsync(address.Host, address.Port);
        var stream = socket.GetStream();
        byte[] payload = System.Text.Encoding.UTF8.GetBytes(body);
        var request = new System.Text.StringBuilder()
            .Append($"POST {path} HTTP/1.1\r\nHost: {address.Authority}\r\nContent-Type: application/json\r\nConnection: close\r\n")
            .Append(chunked ? "Transfer-Encoding: chunked\r\n\r\n" + $"{payload.Length:x}\r\n" : $"Content-Length: {payload.Length}\r\n\r\n");
        var bytes = new List<byte>(System.Text.Encoding.ASCII.GetBytes(request.ToString()));
        bytes.AddRange(payload);
        if (chunked)
            bytes.AddRange(System.Text.Encoding.ASCII.GetBytes("\r\n0\r\n\r\n"));
        await stream.WriteAsync(bytes.ToArray());
        using var reader = new StreamReader(stream);
        string response = await reader.ReadToEndAsync();
        int status = int.Parse(response.Split(' ')[1]);
        string content = response[(response.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        if (response.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
            content = string.Concat(content.Split("\r\n").Where((_, i) => i % 2 == 1));   // drop the chunk sizes
        return (status, content);
    }

    [Fact]
    public async Task An_api_key_is_required_when_configured()
    {
        await using var server = await fixture.StartAsync(new() { ["ApiKey"] = "sekret" });
        var body = JsonSerializer.Serialize(Bodies.Chat(Bodies.User("Hi")).With("max_tokens", 1));
        var missing = await ServeAssert.ErrorOf(await server.PostAsync("/v1/chat/completions", body), HttpStatusCode.Unauthorized);
        Assert.Equal("authentication_error", missing.GetProperty("type").GetString());

        server.Http.DefaultRequestHeaders.Authorization = new("Bearer", "wrong");
        await ServeAssert.ErrorOf(await server.Http.GetAsync("/v1/models"), HttpStatusCode.Unauthorized);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/health")).StatusCode);

        server.Http.DefaultRequestHeaders.Authorization = new("Bearer", "sekret");
        Assert.Equal(HttpStatusCode.OK, (await server.PostAsync("/v1/chat/completions", body)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after()
    {
        await using var server = await fixture.StartAsync(new() { ["Parallel"] = "1", ["MaxQueue"] = "1" });
        var gate = server.Get<AdmissionGate>();
        using var hold = new ManualResetEventSlim();
        fixture.Format.Enqueue(new([[new TextDelta("held")]], hold));
        try
        {
            var running = server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("first"))));
            await ServeAssert.Until(() => gate.Running == 1);
            var waiting = server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("second"))));
            await ServeAssert.Until(() => gate.Waiting == 1);

            var refused = await server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("third"))));
            Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter?.Delta);
            var error = await ServeAssert.ErrorOf(refused, HttpStatusCode.TooManyRequests);
            Assert.Equal("rate_limit_error", error.GetProperty("type").GetString());
            Assert.Equal("queue_full", error.GetProperty("code").GetString());

            hold.Set();
            Assert.Equal(HttpStatusCode.OK, (await running).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await waiting).StatusCode);
            await ServeAssert.Until(() => gate.Running == 0 && gate.Waiting == 0);
        }
        finally
        {
            hold.Set();
        }
    }

    [Fact]
    public async Task A_busy_explicit_session_is_409()
    {
        await using var server = await fixture.StartAsync();
        using var hold = new ManualResetEventSlim();
        fixture.Format.Enqueue(new([[new TextDelta("held")]], hold));
        try
        {
            var running = server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("first"))), sessionId: "s");
            await ServeAssert.Until(() => server.Get<ConversationRouter>().Busy == 1);
            var error = await ServeAssert.ErrorOf(await server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("again"))), sessionId: "s"), HttpStatusCode.Conflict);
            Assert.Contains("'s' is busy", error.GetProperty("message").GetString());
            hold.Set();
            Assert.Equal(HttpStatusCode.OK, (await running).StatusCode);
        }
        finally
        {
            hold.Set();
        }
    }
}
