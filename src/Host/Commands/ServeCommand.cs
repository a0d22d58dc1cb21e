using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Pipeline.Host.Serve;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline serve [--model DIR] [--port 8080] ...`: the OpenAI-compatible HTTP server. Settings come
/// from appsettings.json, PIPELINE_* environment variables and these options (highest precedence).
/// </summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo?>("--model") { Description = "checkpoint folder; default: the built-in tiny test model" };
        var modelName = new Option<string?>("--model-name") { Description = "model id in responses and /v1/models; default: the folder's name" };
        var host = new Option<string?>("--host") { Description = "address to listen on (default 127.0.0.1; 0.0.0.0 = all)" };
        var port = new Option<int?>("--port") { Description = "port (default 8080; 0 = any free port)" };
        var apiKey = new Option<string?>("--api-key") { Description = "require Authorization: Bearer KEY on every endpoint but /health" };
        var parallel = new Option<int?>("--parallel") { Description = "turns generating at once, batched by the actors (default 4)" };
        var maxQueue = new Option<int?>("--max-queue") { Description = "requests that may wait for a turn slot before 429 (default 16)" };
        var maxBody = new Option<long?>("--max-body") { Description = "largest request body in bytes before 413 (default 32 MiB)" };
        var maxSessions = new Option<int?>("--max-sessions") { Description = "conversations whose KV caches are kept for reuse (default 8)" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads (0 = all cores)" };
        var hocon = new Option<string?>("--hocon") { Description = "HOCON over config/akka.hocon, e.g. \"pipeline.max-context = 8192\"" };
        var exporter = new Option<string?>("--telemetry-exporter") { Description = "traces and metrics besides /metrics: none, console or otlp (default none)" };
        var otlp = new Option<string?>("--otlp-endpoint") { Description = "OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT or the exporter's)" };

        var command = new Command("serve", "Serve the OpenAI-compatible HTTP API (chat completions, tokenize, metrics).")
        {
            model, modelName, host, port, apiKey, parallel, maxQueue, maxBody, maxSessions, threads, hocon, exporter, otlp,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var error = parse.InvocationConfiguration.Error;
            // Only options given on the command line override appsettings.json and PIPELINE_* variables.
            var overrides = new Dictionary<string, string?>();
            void Set<T>(string key, Option<T> option)
            {
                if (parse.GetResult(option) is not null && parse.GetValue(option) is { } value)
                    overrides[key] = value is DirectoryInfo d ? d.FullName : System.Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture);
            }
            Set(nameof(ServeOptions.Model), model);
            Set(nameof(ServeOptions.ModelName), modelName);
            Set(nameof(ServeOptions.Host), host);
            Set(nameof(ServeOptions.Port), port);
            Set(nameof(ServeOptions.ApiKey), apiKey);
            Set(nameof(ServeOptions.Parallel), parallel);
            Set(nameof(ServeOptions.MaxQueue), maxQueue);
            Set(nameof(ServeOptions.MaxBody), maxBody);
            Set(nameof(ServeOptions.MaxSessions), maxSessions);
            Set(nameof(ServeOptions.Threads), threads);
            Set(nameof(ServeOptions.Hocon), hocon);
            Set(nameof(ServeOptions.TelemetryExporter), exporter);
            Set(nameof(ServeOptions.OtlpEndpoint), otlp);
            try
            {
                await using var app = ServeApp.Build(overrides, progress: error);
                await app.StartAsync(cancellation);
                error.WriteLine($"pipeline serve: listening on {string.Join(", ", app.Urls)}");
                await app.WaitForShutdownAsync(cancellation);
                if (app.Services.GetRequiredService<ModelHolder>().Failure is { } failure)
                {
                    error.WriteLine($"pipeline serve: {failure}");
                    return 1;
                }
                return 0;
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or AggregateException
                                          or Pipeline.Model.Checkpoint.CheckpointFormatException or Akka.Configuration.ConfigurationException)
            {
                var inner = e is AggregateException a ? a.Flatten().InnerExceptions[0] : e;
                error.WriteLine($"pipeline serve: {inner.Message}");
                return 1;
            }
        });
        return command;
    }
}
