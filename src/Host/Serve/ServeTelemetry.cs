using System.Diagnostics.Metrics;

namespace Pipeline.Host.Serve;

/// <summary>
/// The server's own metrics (Meter "Pipeline.Host"), next to the pipeline's "Pipeline.Actors" ones.
/// One per server, so the admission gauges read that server's gate.
/// </summary>
public sealed class ServeTelemetry : IDisposable
{
    public const string MeterName = "Pipeline.Host";

    public ServeTelemetry(AdmissionGate gate)
    {
        Meter = new Meter(MeterName, "1.0");
        Requests = Meter.CreateCounter<long>("pipeline.server.requests", "{request}", "Chat completion requests answered, by HTTP status");
        PromptTokens = Meter.CreateCounter<long>("pipeline.server.prompt_tokens", "{token}", "Prompt tokens of answered requests");
        CachedTokens = Meter.CreateCounter<long>("pipeline.server.cached_tokens", "{token}", "Prompt tokens reused from a session's cache");
        CompletionTokens = Meter.CreateCounter<long>("pipeline.server.completion_tokens", "{token}", "Tokens generated for answered requests");
        Meter.CreateObservableGauge("pipeline.server.queue_depth", () => gate.Waiting, "{request}", "Requests waiting for a turn slot");
        Meter.CreateObservableGauge("pipeline.server.running", () => gate.Running, "{request}", "Turns in flight");
    }

    public Meter Meter { get; }
    public Counter<long> Requests { get; }
    public Counter<long> PromptTokens { get; }
    public Counter<long> CachedTokens { get; }
    public Counter<long> CompletionTokens { get; }

    public void CountRequest(int status) => Requests.Add(1, new KeyValuePair<string, object?>("status", status));

    public void Dispose() => Meter.Dispose();
}
