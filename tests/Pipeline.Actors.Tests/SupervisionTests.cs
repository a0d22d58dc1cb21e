using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

/// <summary>Bounded retries: a stage that always fails ends the turn with a clear error; the system recovers.</summary>
public class SupervisionTests(TinyModel tiny, Reference reference) : IClassFixture<TinyModel>, IClassFixture<Reference>
{
    public static TheoryData<string, string> AlwaysFailing() => new()
    {
        { "executor", "executor failed" },
        { "sampler", "sampler failed" },
        { "tokenizer", "tokenizer failed" },
        { "detokenizer", "detokenizer failed" },
    };

    [Theory]
    [MemberData(nameof(AlwaysFailing))]
    public async Task A_stage_that_always_fails_ends_the_turn_with_an_error_and_the_system_recovers(string role, string message)
    {
        var (system, client) = tiny.Start($"pipeline.faults {{ enabled = on, {role} {{ probability = 1.0, mode = throw }} }}\npipeline.max-step-retries = 3");
        using var _ = system;
        var completed = TurnRecording.Attach(system);
        var request = new TurnRequest
        {
            SessionId = $"always-{role}",
            Messages = [ChatMessage.FromUser("hello")],
            Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 3 },
        };
        var failed = await client.RunTurnAsync(request).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(FinishReason.Error, failed.Finished.Reason);
        Assert.Contains(message + " 4 times in a row", failed.Finished.Error);
        Assert.Contains("injected fault", failed.Finished.Error);

        // Faults off: the same session answers, with the tokens the bare engine gives.
        client.Faults.Active = false;
        var retry = request with { TurnId = Guid.NewGuid().ToString("N"), Messages = [ChatMessage.FromUser("hello again")] };
        var ok = await client.RunTurnAsync(retry).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Null(ok.Finished.Error);
        var record = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(retry.TurnId));
        Assert.Equal(reference.Generate(record.PromptIds, tiny.Model.SamplingFor(retry.Options), 3), record.GeneratedIds);
        // The failed turn kept the user's message.
        var transcript = await client.GetTranscriptAsync(request.SessionId);
        Assert.Equal("hello", transcript[0].Content);
    }

    [Fact]
    public async Task A_session_actor_that_keeps_failing_rejects_the_turn_with_an_error_and_serves_afterwards()
    {
        var (system, client) = tiny.Start("pipeline.faults { enabled = on, session { probability = 1.0, mode = kill } }\npipeline.max-turn-restarts = 2");
        using var _ = system;
        var failed = await client.RunTurnAsync(new TurnRequest
        {
            SessionId = "always-session",
            Messages = [ChatMessage.FromUser("hello")],
            Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 3 },
        }).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(FinishReason.Error, failed.Finished.Reason);
        Assert.Contains("the session's actor failed 3 times before the turn could start", failed.Finished.Error);
        client.Faults.Active = false;
        var ok = await client.RunTurnAsync(new TurnRequest
        {
            SessionId = "always-session",
            Messages = [ChatMessage.FromUser("hello")],
            Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 3 },
        }).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Null(ok.Finished.Error);
        Assert.Equal(["user", "assistant"], (await client.GetTranscriptAsync("always-session")).Select(m => m.Role));
    }

    [Fact]
    public async Task Executor_and_session_failures_are_retried_into_the_same_tokens()
    {
        var (system, client) = tiny.Start("""
            pipeline.layer-groups = 3
            pipeline.faults {
              enabled = on
              seed = 5
              executor { probability = 0.3, mode = throw }
              session { probability = 0.15, mode = kill }
            }
            pipeline.max-step-retries = 60
            pipeline.max-turn-restarts = 60
            """);
        // With a kill on 15% of every message a session handles and three executors throwing on 30% of passes,
        // rebuilding a turn after a restart takes many messages, so runs of 20+ restarts without a new token
        // happen by chance (about 1 test run in 7 with the bounds at 20). The bounds are set where a run that
        // long has a chance below 1e-5: this test is about retrying into the same tokens, not about the bounds
        // (the two tests above end turns at their bounds on purpose).
        using var _ = system;
        var completed = TurnRecording.Attach(system);
        var requests = Enumerable.Range(0, 4).Select(i => new TurnRequest
        {
            SessionId = $"retry-{i}",
            Messages = [ChatMessage.FromUser($"session {i} says {string.Join(' ', Enumerable.Repeat("hi", i * 9))}")],
            Options = new GenerationOptions { Temperature = 1.0f, TopK = 20, Seed = (ulong)i, MaxNewTokens = 4 },
        }).ToArray();
        var results = await Task.WhenAll(requests.Select(r => client.RunTurnAsync(r))).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(client.Faults.Injected(ActorRole.Executor) > 0);
        Assert.True(client.Faults.Injected(ActorRole.Session) > 0);
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Null(results[i].Finished.Error);
            var record = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(requests[i].TurnId));
            Assert.Equal(reference.Generate(record.PromptIds, tiny.Model.SamplingFor(requests[i].Options), 4), record.GeneratedIds);
        }
    }
}
