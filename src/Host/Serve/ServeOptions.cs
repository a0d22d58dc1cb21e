namespace Pipeline.Host.Serve;

/// <summary>
/// Settings of `pipeline serve`, bound from appsettings.json, then PIPELINE_* environment variables,
/// then the command line (each overriding the one before).
/// </summary>
public sealed class ServeOptions
{
    /// <summary>Model folder; null = the built-in tiny test model.</summary>
    public string? Model { get; set; }

    /// <summary>Name reported by /v1/models and in responses; null = the model folder's name.</summary>
    public string? ModelName { get; set; }

    public string Host { get; set; } = "127.0.0.1";

    /// <summary>0 = any free port (tests).</summary>
    public int Port { get; set; } = 8080;

    /// <summary>When set, every endpoint but /health needs "Authorization: Bearer KEY".</summary>
    public string? ApiKey { get; set; }

    /// <summary>Turns generating at once (the actors batch them).</summary>
    public int Parallel { get; set; } = 4;

    /// <summary>Requests that may wait for a free turn slot; more are refused with 429.</summary>
    public int MaxQueue { get; set; } = 16;

    /// <summary>Largest request body in bytes (413 above it).</summary>
    public long MaxBody { get; set; } = 32 * 1024 * 1024;

    /// <summary>Conversations whose caches are kept for reuse; the least recently used idle one is ended beyond it.</summary>
    public int MaxSessions { get; set; } = 8;

    /// <summary>Backend threads; 0 = all cores.</summary>
    public int Threads { get; set; }

    /// <summary>HOCON layered over config/akka.hocon (e.g. "pipeline.max-context = 8192").</summary>
    public string? Hocon { get; set; }

    /// <summary>Where traces and metrics go besides /metrics: none, console or otlp.</summary>
    public string TelemetryExporter { get; set; } = "none";

    /// <summary>OTLP endpoint when <see cref="TelemetryExporter"/> is otlp; null = the exporter's default (OTEL_EXPORTER_OTLP_ENDPOINT).</summary>
    public string? OtlpEndpoint { get; set; }

    public void Validate()
    {
        if (Port is < 0 or > 65535)
            throw new ArgumentException($"port {Port} is not in 0..65535");
        if (Parallel < 1)
            throw new ArgumentException($"parallel {Parallel} must be at least 1");
        if (MaxQueue < 0)
            throw new ArgumentException($"max-queue {MaxQueue} must not be negative");
        if (MaxBody < 1024)
            throw new ArgumentException($"max-body {MaxBody} must be at least 1024 bytes");
        if (MaxSessions < 1)
            throw new ArgumentException($"max-sessions {MaxSessions} must be at least 1");
        if (Threads < 0)
            throw new ArgumentException($"threads {Threads} must not be negative");
        if (TelemetryExporter is not ("none" or "console" or "otlp"))
            throw new ArgumentException($"telemetry-exporter '{TelemetryExporter}' is not one of none, console, otlp");
        if (Host != "localhost" && !System.Net.IPAddress.TryParse(Host, out _))
            throw new ArgumentException($"host '{Host}' is not an IP address or 'localhost'");
    }
}
