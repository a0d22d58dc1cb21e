using System.Net;
using System.Text.Json;
using Pipeline.Actors.Execution;
using Pipeline.Host.Serve;

namespace Pipeline.Host.Tests.Serve;

/// <summary>Loading (health 503 then 200), client disconnects cancelling turns, the other endpoints and /metrics.</summary>
[Collection(ServeCollection.Name)]
public sealed class ServeLifecycleTests(ServeFixture fixture)
{
    [Fact]
    public async Task Health_is_503_while_the_model_loads_then_200()
    {
        var release = new TaskCompletionSource();
        await using var server = await TestServer.StartAsync(fixture, null, async _ =>
        {
            await release.Task;
            return fixture.LoadModel();
        });

        var loading = await server.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, loading.StatusCode);
        Assert.NotNull(loading.Headers.RetryAfter);
        var error = await ServeAssert.ErrorOf(loading, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("loading", error.GetProperty("code").GetString());
        var chat = await server.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(Bodies.Chat(Bodies.User("Hi"))));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, chat.StatusCode);

        release.SetResult();
        await server.WaitReadyAsync();
        var ready = await server.Http.GetAsync("/health");
        Assert.Equal("ok", JsonDocument.Parse(await ready.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_model_that_fails_to_load_is_reported_and_stops_the_server()
    {
        await using var server = await TestServer.StartAsync(fixture, null,
            _ => Task.FromException<PipelineModel>(new FileNotFoundException("model folder '/nowhere' has no config.json")));
        await ServeAssert.Until(() => server.Get<ModelHolder>().Failure is not null);
        Assert.Contains("/nowhere", server.Get<ModelHolder>().Failure);
        await ServeAssert.Until(() => server.App.Lifetime.ApplicationStopping.IsCancellationRequested);
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_cancels_its_turn_and_frees_the_session()
    {
        await using var server = await fixture.StartAsync();
        var router = server.Get<ConversationRouter>();
        var gate = server.Get<AdmissionGate>();
        // Long enough to run for many seconds if nothing stopped it.
        var body = JsonSerializer.Serialize(Bodies.Chat(Bodies.User("Tell me a long story")).With("max_tokens", 3000).With("stream", true));
        using (var cancel = new CancellationTokenSource())
        {
            var response = await server.PostAsync("/v1/chat/completions", body, sessionId: "story", cancellation: cancel.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var stream = await response.Content.ReadAsStreamAsync(cancel.Token);
            var reader = new StreamReader(stream);
            Assert.StartsWith("data: ", await reader.ReadLineAsync(cancel.Token));
            cancel.Cancel();
            response.Dispose();
        }
        await ServeAssert.Until(() => router.Busy == 0 && gate.Running == 0, seconds: 10);

        // The session takes a new turn at once.
        var (next, response2) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("Short one")).With("max_tokens", 2), sessionId: "story");
        Assert.Equal(2, next.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("story", response2.Headers.GetValues("X-Session-Id").Single());
    }

    [Fact]
    public async Task A_client_that_disconnects_during_prefill_cancels_its_turn()
    {
        await using var server = await fixture.StartAsync();
        var router = server.Get<ConversationRouter>();
        // ~3000 prompt tokens in 16-token prefill chunks: seconds of prefill on this machine.
        string words = string.Join(' ', Enumerable.Repeat("hello", 3000));
        Assert.InRange(fixture.Model.Tokenizer.Encode(words).Length, 2500, 3500);
        var body = JsonSerializer.Serialize(Bodies.Chat(Bodies.User(words)).With("max_tokens", 500));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => server.PostAsync("/v1/chat/completions", body, cancellation: cancel.Token));
        await ServeAssert.Until(() => router.Busy == 0, seconds: 10);
        // The cancelled conversation's session was ended (its state is unknown), so nothing is kept.
        await ServeAssert.Until(() => router.Count == 0, seconds: 10);
    }

    [Fact]
    public async Task Tokenize_detokenize_apply_template_and_models_answer_like_llama_server()
    {
        var server = await fixture.SharedAsync();
        var tokenizer = fixture.Model.Tokenizer;

        var (tokens, _) = await server.PostJsonAsync("/tokenize", new { content = "Hello world" });
        int[] ids = tokens.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(tokenizer.Encode("Hello world"), ids);
        var (withBos, _) = await server.PostJsonAsync("/tokenize", new { content = "Hello world", add_special = true });
        Assert.Equal(tokenizer.BosId, withBos.GetProperty("tokens")[0].GetInt32());
        var (pieces, _) = await server.PostJsonAsync("/tokenize", new { content = "Hello world", with_pieces = true });
        Assert.Equal("Hello world", string.Concat(pieces.GetProperty("tokens").EnumerateArray().Select(p => p.GetProperty("piece").GetString())));
        Assert.Equal(ids, pieces.GetProperty("tokens").EnumerateArray().Select(p => p.GetProperty("id").GetInt32()));

        var (text, _) = await server.PostJsonAsync("/detokenize", new { tokens = ids });
        Assert.Equal("Hello world", text.GetProperty("content").GetString());
        var bad = await ServeAssert.ErrorOf(await server.PostAsync("/detokenize", JsonSerializer.Serialize(new { tokens = new[] { ids[0], -5 } })), HttpStatusCode.BadRequest);
        Assert.Equal("$.tokens[1]", bad.GetProperty("param").GetString());
        var missing = await ServeAssert.ErrorOf(await server.PostAsync("/tokenize", "{\"text\":\"Hi\"}"), HttpStatusCode.BadRequest);
        Assert.Equal("$.text", missing.GetProperty("param").GetString());

        var (template, _) = await server.PostJsonAsync("/apply-template", new { messages = new[] { new { role = "user", content = "Hi there" } } });
        Assert.Equal(
            fixture.Model.ChatFormat.Render([Pipeline.Actors.ChatMessage.FromUser("Hi there")], new(null, null, null)),
            template.GetProperty("prompt").GetString());

        var models = JsonDocument.Parse(await server.Http.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("list", models.GetProperty("object").GetString());
        Assert.Equal("ud-q2kxl", models.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.Equal("model", models.GetProperty("data")[0].GetProperty("object").GetString());
    }

    [Fact]
    public async Task Metrics_publish_requests_tokens_ttft_throughput_queue_depth_and_batch_size()
    {
        await using var server = await fixture.StartAsync();
        await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(Bodies.User("Hi")).With("max_tokens", 4));
        string metrics = await server.Http.GetStringAsync("/metrics");
        foreach (string name in new[]
                 {
                     "pipeline_server_requests_total", "pipeline_server_prompt_tokens_total", "pipeline_server_completion_tokens_total",
                     "pipeline_server_queue_depth", "pipeline_tokens_generated_total", "pipeline_turn_time_to_first_token_milliseconds_bucket",
                     "pipeline_turn_decode_tokens_per_second", "pipeline_executor_batch_size", "pipeline_executor_queue_depth",
                     "http_server_request_duration_seconds",
                 })
            Assert.Contains(name, metrics);
        string requests = metrics.Split('\n').Single(l => l.StartsWith("pipeline_server_requests_total{", StringComparison.Ordinal));
        Assert.Contains("status=\"200\"", requests);
        Assert.EndsWith(" 1", requests);
    }
}

/// <summary>Settings binding: bad values fail before anything starts, naming the setting.</summary>
public sealed class ServeSettingsTests
{
    [Theory]
    [InlineData("Parallel", "0", "parallel 0")]
    [InlineData("MaxQueue", "-1", "max-queue -1")]
    [InlineData("Port", "70000", "port 70000")]
    [InlineData("Port", "eighty", "Port")]
    [InlineData("TelemetryExporter", "zipkin", "zipkin")]
    [InlineData("Host", "example.com", "example.com")]
    public void Bad_settings_are_refused_by_name(string key, string value, string named)
    {
        var settings = new Dictionary<string, string?> { [key] = value };
        var error = Assert.ThrowsAny<ArgumentException>(() =>
            ServeApp.Build(settings, new ModelSource(_ => Task.FromException<PipelineModel>(new InvalidOperationException("never loaded")))));
        Assert.Contains(named, error.Message);
    }
}
