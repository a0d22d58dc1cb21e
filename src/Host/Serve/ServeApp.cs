using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;
using Pipeline.Actors.Telemetry;
using Pipeline.Model.TestModels;

namespace Pipeline.Host.Serve;

/// <summary>
/// Builds the `pipeline serve` web application: Kestrel with the OpenAI-compatible endpoints, the
/// actor pipeline through Akka.Hosting, OpenTelemetry (Prometheus /metrics, console or OTLP), and the
/// model loaded in the background so /health can say 503 until it is ready.
/// </summary>
public static class ServeApp
{
    /// <summary>Prefix of the environment variables that configure the server (PIPELINE_PORT, PIPELINE_APIKEY, ...).</summary>
    public const string EnvironmentPrefix = "PIPELINE_";

    /// <summary>
    /// The application, configured from appsettings.json (current folder), PIPELINE_* environment
    /// variables and <paramref name="overrides"/> (the command line; keys are <see cref="ServeOptions"/>
    /// property names), in increasing precedence. <paramref name="model"/> null = load the --model
    /// folder (or the built-in tiny model).
    /// </summary>
    public static WebApplication Build(IReadOnlyDictionary<string, string?> overrides, ModelSource? model = null, TextWriter? progress = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        builder.Configuration.AddEnvironmentVariables(EnvironmentPrefix);
        builder.Configuration.AddInMemoryCollection(overrides);
        var options = new ServeOptions();
        try
        {
            builder.Configuration.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new ArgumentException($"invalid server setting: {e.Message}", e);
        }
        options.Validate();

        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxBody;
            if (options.Host == "localhost")
                kestrel.ListenLocalhost(options.Port);
            else
                kestrel.Listen(IPAddress.Parse(options.Host), options.Port);
        });

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(model ?? DefaultSource(options, progress ?? Console.Error));
        services.AddSingleton<ModelHolder>();
        services.AddHostedService(provider => provider.GetRequiredService<ModelHolder>());
        services.AddSingleton(provider => provider.GetRequiredService<ModelHolder>().Model.GetAwaiter().GetResult());
        int before = services.Count;
        services.AddPipelineActors(o => o.Hocon = options.Hocon);
        // Kestrel starts after the hosted services, so the actor system's start (which needs the
        // model) must not hold up the host's: it runs once the model is there.
        DeferredStart.Defer(services, before);
        var gate = new AdmissionGate(options.Parallel, options.MaxQueue);
        services.AddSingleton(gate);
        services.AddSingleton<ServeTelemetry>();
        services.AddSingleton(provider => new ConversationRouter(options.MaxSessions, provider.GetRequiredService<ILogger<ConversationRouter>>()));
        services.AddSingleton<ChatCompletionsEndpoint>();
        AddTelemetry(services, options);

        var app = builder.Build();
        var holder = app.Services.GetRequiredService<ModelHolder>();
        app.Lifetime.ApplicationStopped.Register(holder.Release);
        _ = app.Services.GetRequiredService<ServeTelemetry>();   // its gauges exist from the start

        app.Use(async (context, next) =>
        {
            try
            {
                if (options.ApiKey is { Length: > 0 } key && context.Request.Path != "/health" && !Authorized(context.Request, key))
                    throw new ApiException(StatusCodes.Status401Unauthorized, "invalid or missing API key (send Authorization: Bearer KEY)", null, "invalid_api_key");
                await next(context);
            }
            catch (ApiException e) when (!context.Response.HasStarted)
            {
                await e.WriteAsync(context.Response);
            }
        });
        app.MapGet("/health", (HttpContext context) => ServeEndpoints.HealthAsync(context, holder));
        app.MapGet("/v1/models", (HttpContext context) => ServeEndpoints.ModelsAsync(context, holder, options));
        var chat = app.Services.GetRequiredService<ChatCompletionsEndpoint>();
        app.MapPost("/v1/chat/completions", chat.HandleAsync);
        app.MapPost("/tokenize", (HttpContext context) => ServeEndpoints.TokenizeAsync(context, holder));
        app.MapPost("/detokenize", (HttpContext context) => ServeEndpoints.DetokenizeAsync(context, holder));
        app.MapPost("/apply-template", (HttpContext context) => ServeEndpoints.ApplyTemplateAsync(context, holder));
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }

    /// <summary>Loads the --model folder, or generates and loads the built-in tiny model.</summary>
    public static ModelSource DefaultSource(ServeOptions options, TextWriter progress) => new(
        _ => Task.Run(() =>
        {
            string directory = BuiltInModel.Resolve(options.Model is null ? null : new DirectoryInfo(options.Model), progress);
            if (!File.Exists(Path.Combine(directory, "config.json")))
                throw new FileNotFoundException($"model folder '{directory}' has no config.json");
            return PipelineModel.Load(directory, threads: options.Threads);
        }));

    private static bool Authorized(HttpRequest request, string key)
    {
        string? header = request.Headers.Authorization.FirstOrDefault();
        const string Bearer = "Bearer ";
        return header is not null && header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase)
            && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                System.Text.Encoding.UTF8.GetBytes(header[Bearer.Length..].Trim()), System.Text.Encoding.UTF8.GetBytes(key));
    }

    private static void AddTelemetry(IServiceCollection services, ServeOptions options)
    {
        var telemetry = services.AddOpenTelemetry().ConfigureResource(r => r.AddService("pipeline"));
        telemetry.WithMetrics(metrics =>
        {
            metrics.AddMeter(PipelineTelemetry.SourceName, ServeTelemetry.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel");
            metrics.AddPrometheusExporter();
            if (options.TelemetryExporter == "console")
                metrics.AddConsoleExporter();
            else if (options.TelemetryExporter == "otlp")
                metrics.AddOtlpExporter(o => Endpoint(o, options));
        });
        if (options.TelemetryExporter == "none")
            return;
        telemetry.WithTracing(tracing =>
        {
            tracing.AddSource(PipelineTelemetry.SourceName, "Microsoft.AspNetCore");
            if (options.TelemetryExporter == "console")
                tracing.AddConsoleExporter();
            else
                tracing.AddOtlpExporter(o => Endpoint(o, options));
        });
    }

    private static void Endpoint(OtlpExporterOptions exporter, ServeOptions options)
    {
        if (options.OtlpEndpoint is { Length: > 0 } endpoint)
            exporter.Endpoint = new Uri(endpoint);
    }
}
