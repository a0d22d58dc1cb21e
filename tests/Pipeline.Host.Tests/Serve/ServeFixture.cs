using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Text;
using Pipeline.Host.Serve;

namespace Pipeline.Host.Tests.Serve;

[CollectionDefinition(Name)]
public sealed class ServeCollection : ICollectionFixture<ServeFixture>
{
    public const string Name = "serve";
}

/// <summary>
/// The tiny-a fixture model with a <see cref="ScriptedChatFormat"/>. Each server owns (and disposes) a
/// model of its own; loading once here warms the shared tokenizer so the servers' loads are quick.
/// </summary>
public sealed class ServeFixture : IDisposable
{
    public static readonly string TinyModelDirectory = Path.Combine(RepoRoot(), "tests", "fixtures", "gemma4-tiny-a", "ud-q2kxl");

    public ServeFixture()
    {
        Format = new ScriptedChatFormat(Gemma4ChatFormat.ForModel(TinyModelDirectory));
        Model = PipelineModel.Load(TinyModelDirectory, Format, threads: 1);
    }

    public ScriptedChatFormat Format { get; }

    public PipelineModel Model { get; }

    /// <summary>A started server on a free loopback port, ready (health 200).</summary>
    public async Task<TestServer> StartAsync(Dictionary<string, string?>? settings = null)
    {
        var server = await TestServer.StartAsync(this, settings, _ => Task.Run(LoadModel));
        await server.WaitReadyAsync();
        return server;
    }

    /// <summary>A fresh model on the fixture's checkpoint and scripted format.</summary>
    public PipelineModel LoadModel() => PipelineModel.Load(TinyModelDirectory, Format, threads: 1);

    /// <summary>One default server kept for the whole collection, for tests that never reach the pipeline.</summary>
    public async Task<TestServer> SharedAsync() => _shared ??= await StartAsync();

    private TestServer? _shared;

    public void Dispose()
    {
        _shared?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Model.Dispose();
    }

    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new DirectoryNotFoundException("no folder above the test binaries holds pipeline.sln");
    }
}

/// <summary>One `pipeline serve` application on Kestrel at 127.0.0.1:0, with an HttpClient for it.</summary>
public sealed class TestServer : IAsyncDisposable
{
    public const string TestHocon = "pipeline.prefill-chunk = 16\npipeline.sliding-cache-reserve = 32\npipeline.step-timeout = 60s";

    private TestServer(WebApplication app, Uri address)
    {
        App = app;
        Address = address;
        Http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(120) };
    }

    public WebApplication App { get; }
    public Uri Address { get; }
    public HttpClient Http { get; }

    public T Get<T>() where T : notnull => App.Services.GetRequiredService<T>();

    public static async Task<TestServer> StartAsync(ServeFixture fixture, Dictionary<string, string?>? settings, Func<CancellationToken, Task<PipelineModel>> load)
    {
        fixture.Format.Clear();
        var overrides = new Dictionary<string, string?>
        {
            ["Port"] = "0",
            ["Host"] = "127.0.0.1",
            ["Hocon"] = TestHocon,
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in settings ?? [])
            overrides[key] = key == "Hocon" ? TestHocon + "\n" + value : value;
        var app = ServeApp.Build(overrides, new ModelSource(load));
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new TestServer(app, new Uri(address));
    }

    public async Task WaitReadyAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            using var response = await Http.GetAsync("/health");
            if (response.IsSuccessStatusCode)
                return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"the server did not become ready: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            await Task.Delay(20);
        }
    }

    public Task<HttpResponseMessage> PostAsync(string path, string json, string? sessionId = null, CancellationToken cancellation = default)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json") };
        if (sessionId is not null)
            request.Headers.Add("X-Session-Id", sessionId);
        return Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellation);
    }

    /// <summary>Posts and parses a JSON answer, asserting the status.</summary>
    public async Task<(JsonElement Body, HttpResponseMessage Response)> PostJsonAsync(string path, object body, int expectedStatus = 200, string? sessionId = null)
    {
        var response = await PostAsync(path, JsonSerializer.Serialize(body), sessionId);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == expectedStatus, $"expected {expectedStatus}, got {(int)response.StatusCode}: {text}");
        return (JsonDocument.Parse(text).RootElement.Clone(), response);
    }

    /// <summary>Every SSE event's data (checked to be "data: ..." lines separated by blank lines), [DONE] included.</summary>
    public static async Task<List<string>> ReadEventsAsync(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync();
        var events = new List<string>();
        foreach (string block in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            Assert.StartsWith("data: ", block);
            Assert.DoesNotContain('\n', block);
            events.Add(block["data: ".Length..]);
        }
        return events;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>Request bodies the tests post.</summary>
public static class Bodies
{
    public static object User(string text) => new { role = "user", content = text };

    public static Dictionary<string, object?> Chat(params object[] messages) => new()
    {
        ["messages"] = messages,
        ["temperature"] = 0,
        ["max_tokens"] = 6,
    };

    public static Dictionary<string, object?> With(this Dictionary<string, object?> body, string key, object? value)
    {
        body[key] = value;
        return body;
    }
}

/// <summary>Assertions the server tests share.</summary>
public static class ServeAssert
{
    public static async Task<JsonElement> ErrorOf(HttpResponseMessage response, HttpStatusCode status)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        foreach (string member in new[] { "message", "type", "param", "code" })
            Assert.True(error.TryGetProperty(member, out _), $"the error object lacks '{member}': {text}");
        return error.Clone();
    }

    public static async Task Until(Func<bool> condition, double seconds = 30)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"the condition did not hold within {seconds} s");
            await Task.Delay(10);
        }
    }
}
