using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Trace;
using Pipeline.Actors.Telemetry;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>
/// Collects the "Pipeline.Actors" spans through OpenTelemetry's in-memory exporter. Listeners are
/// process-wide and tests run in parallel, so callers filter by their own trace id.
/// </summary>
public sealed class SpanCollector : IDisposable
{
    private readonly List<Activity> _spans = [];
    private readonly TracerProvider _provider;

    public SpanCollector()
    {
        _provider = Sdk.CreateTracerProviderBuilder()
            .AddSource(PipelineTelemetry.SourceName, TestSourceName)
            .SetSampler(new AlwaysOnSampler())
            .AddInMemoryExporter(_spans)
            .Build()!;
    }

    public const string TestSourceName = "Pipeline.Actors.Tests";

    public static readonly ActivitySource TestSource = new(TestSourceName);

    /// <summary>Exported spans of one trace (ended spans only).</summary>
    public IReadOnlyList<Activity> Trace(ActivityTraceId traceId)
    {
        _provider.ForceFlush();
        lock (_spans)
            return _spans.Where(s => s.TraceId == traceId).ToArray();
    }

    /// <summary>Every exported span so far.</summary>
    public IReadOnlyList<Activity> All()
    {
        _provider.ForceFlush();
        lock (_spans)
            return _spans.ToArray();
    }

    public void Dispose() => _provider.Dispose();
}
