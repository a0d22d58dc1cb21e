using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Pipeline.Actors.Telemetry;
using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

public class MetricsTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    [Fact]
    public async Task A_turn_publishes_ttft_throughput_queue_depth_and_batch_size()
    {
        var measured = new ConcurrentDictionary<string, List<double>>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == PipelineTelemetry.SourceName)
                l.EnableMeasurementEvents(instrument);
        };
        void Record(Instrument instrument, double value)
        {
            var list = measured.GetOrAdd(instrument.Name, _ => []);
            lock (list)
                list.Add(value);
        }
        listener.SetMeasurementEventCallback<double>((i, v, _, _) => Record(i, v));
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => Record(i, v));
        listener.SetMeasurementEventCallback<int>((i, v, _, _) => Record(i, v));
        listener.Start();

        var (system, client) = tiny.Start();
        using var _ = system;
        var result = await client.RunTurnAsync(new TurnRequest
        {
            SessionId = "metrics",
            Messages = [ChatMessage.FromUser("count me")],
            Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 4 },
        }).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Null(result.Finished.Error);
        Assert.True(result.Finished.Timings.TimeToFirstTokenMs > 0);
        Assert.True(result.Finished.Timings.PrefillTokensPerSecond > 0);
        Assert.True(result.Finished.Timings.DecodeTokensPerSecond > 0);

        Assert.Contains(measured["pipeline.turn.time_to_first_token"], v => v > 0);
        Assert.Contains(measured["pipeline.turn.decode_tokens_per_second"], v => v > 0);
        Assert.Contains(measured["pipeline.executor.batch_size"], v => v >= 1);
        Assert.Contains(measured["pipeline.executor.queue_depth"], v => v == 1);
        Assert.Contains(measured["pipeline.executor.queue_depth"], v => v == -1);
        Assert.Contains(measured["pipeline.mailbox.wait"], v => v >= 0);
        Assert.True(measured["pipeline.tokens.generated"].Count >= 4);
    }
}
