using System.Diagnostics;
using Pipeline.Actors.Telemetry;
using Pipeline.Actors.Tests.Infrastructure;
using Pipeline.Tokenizer.Parsing;

namespace Pipeline.Actors.Tests;

/// <summary>
/// Same seed, same tokens: 16 sessions driven concurrently through the actors produce exactly what each
/// produces alone on the bare engine, for 1, 2, 3 and 6 layer groups, with batching on and off.
/// A batched pass sums in another order than a lone one, so logits may differ in their last bits; a draw
/// that such a difference could flip (<see cref="Reference.GenerateDecided"/>) ends the comparison for
/// that session, and at most two of the 16 may end early.
/// </summary>
public class DeterminismTests(TinyModel tiny, Reference reference) : IClassFixture<TinyModel>, IClassFixture<Reference>
{
    private const int Sessions = 16;
    private const int MaxNewTokens = 5;

    public static TheoryData<int, bool> Configurations() => new()
    {
        { 1, true }, { 1, false }, { 2, true }, { 2, false }, { 3, true }, { 3, false }, { 6, true }, { 6, false },
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public async Task Concurrent_sessions_produce_exactly_the_tokens_each_produces_alone(int layerGroups, bool batching)
    {
        var (system, client) = tiny.Start($"pipeline.layer-groups = {layerGroups}\npipeline.batching = {(batching ? "on" : "off")}");
        using var _ = system;
        var completed = TurnRecording.Attach(system);
        using var spans = new SpanCollector();

        // Prompts of many lengths: some fit one prefill chunk, some span several and wrap the sliding rings.
        var requests = Enumerable.Range(0, Sessions).Select(i => new TurnRequest
        {
            SessionId = $"det-{layerGroups}-{batching}-{i}",
            Messages = [ChatMessage.FromUser(string.Join(' ', Enumerable.Repeat($"word{i}", 1 + (i * 7 % 23))))],
            Options = new GenerationOptions { Temperature = 1.0f, TopK = 40, Seed = (ulong)(1000 + i), MaxNewTokens = MaxNewTokens },
        }).ToArray();

        ActivityTraceId trace;
        TurnResult[] results;
        using (var root = SpanCollector.TestSource.StartActivity("determinism")!)
        {
            trace = root.TraceId;
            results = await Task.WhenAll(requests.Select(r => client.RunTurnAsync(r))).WaitAsync(TimeSpan.FromMinutes(3));
        }

        // Batching on: some pass held several sessions' steps; off: every pass held one.
        var passes = spans.Trace(trace).Where(s => s.DisplayName == "executor ForwardStep").Select(s => (int)s.GetTagItem(PipelineTags.BatchSize)!).ToArray();
        Assert.NotEmpty(passes);
        if (batching)
            Assert.Contains(passes, size => size > 1);
        else
            Assert.All(passes, size => Assert.Equal(1, size));

        int fullyDecided = 0;
        for (int i = 0; i < Sessions; i++)
        {
            Assert.Null(results[i].Finished.Error);
            var turn = await Eventually(() => completed.GetValueOrDefault(requests[i].TurnId));
            var sampling = tiny.Model.SamplingFor(requests[i].Options);
            var (alone, decided) = reference.GenerateDecided(turn.PromptIds, sampling, MaxNewTokens);
            if (decided == alone.Length)
                fullyDecided++;
            // Up to the first draw within rounding of a sampling boundary, the tokens must be the same
            // (and all of them, length included, when every draw is decided).
            var compared = decided == alone.Length ? turn.GeneratedIds : turn.GeneratedIds.Take(decided).ToArray();
            Assert.True(alone.Take(decided).SequenceEqual(compared),
                $"session {i}: concurrent [{string.Join(",", turn.GeneratedIds)}] vs alone [{string.Join(",", alone)}], {decided} decided");
            Assert.Equal(turn.GeneratedIds.Length, results[i].Finished.Usage.CompletionTokens - (turn.Reason == FinishReason.Stop ? 1 : 0));
            var parsed = Gemma4OutputParser.Parse(tiny.Model.Tokenizer.Decode(turn.GeneratedIds));
            Assert.Equal(parsed.Content, results[i].Text);
            Assert.Equal(parsed.Reasoning, results[i].Reasoning);
        }
        // The exemption stays an exception: nearly every session is compared token for token.
        Assert.True(fullyDecided >= Sessions - 2, $"only {fullyDecided} of {Sessions} sessions had every draw decided");
    }

    internal static async Task<T> Eventually<T>(Func<T?> probe)
        where T : class
    {
        for (int i = 0; i < 500; i++)
        {
            if (probe() is { } value)
                return value;
            await Task.Delay(10);
        }
        throw new TimeoutException("condition not met within 5 s");
    }
}
