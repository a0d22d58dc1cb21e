using System.Collections.Concurrent;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Pipeline.Actors.Tests;

/// <summary>
/// 200 turns over 8 sessions while every role fails on 5% of the messages it handles (throws, or is
/// killed): at least 99% of turns complete with exactly the fault-free tokens, the rest end with a clear
/// error event, no transcript is lost or mixed, and with faults off the system serves normally.
/// </summary>
public class ChaosTests(TinyModel tiny, Reference reference, ITestOutputHelper output) : IClassFixture<TinyModel>, IClassFixture<Reference>
{
    private const int Sessions = 8;
    private const int TurnsPerSession = 25;
    private const int MaxNewTokens = 3;

    private const string ChaosHocon = """
        pipeline.layer-groups = 2
        pipeline.prefill-chunk = 64
        pipeline.sliding-cache-reserve = 64
        pipeline.faults {
          enabled = on
          seed = 20261127
          session-manager { probability = 0.05, mode = throw }
          session { probability = 0.05, mode = throw }
          tokenizer { probability = 0.05, mode = kill }
          executor { probability = 0.05, mode = throw }
          sampler { probability = 0.05, mode = throw }
          detokenizer { probability = 0.05, mode = kill }
        }
        """;

    private sealed record Outcome(string SessionId, int Turn, TurnResult Result, int[] PromptIds, int[] Generated, int[] Expected);

    [Fact]
    public async Task Turns_survive_faults_at_every_role_with_the_fault_free_tokens()
    {
        var (system, client) = tiny.Start(ChaosHocon, "chaos");
        using var _ = system;
        var completed = TurnRecording.Attach(system);
        var format = tiny.Model.ChatFormat;
        var outcomes = new ConcurrentBag<Outcome>();

        async Task Drive(int session)
        {
            string id = $"chaos-{session}";
            var history = new List<ChatMessage>();
            for (int turn = 0; turn < TurnsPerSession; turn++)
            {
                var user = ChatMessage.FromUser($"{id} turn {turn}: tell me about number {turn * 7 + session}");
                var request = new TurnRequest
                {
                    SessionId = id,
                    Messages = [user],
                    Options = new GenerationOptions { Temperature = 1.0f, TopK = 40, Seed = (ulong)(session * 1000 + turn), MaxNewTokens = MaxNewTokens },
                };
                var result = await client.RunTurnAsync(request);
                history.Add(user);
                TurnCompleted record;
                try
                {
                    record = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(request.TurnId));
                }
                catch (TimeoutException)
                {
                    throw new Xunit.Sdk.XunitException($"{id} turn {turn} finished ({result.Finished}) but published no TurnCompleted");
                }

                // The prompt is this session's own history, rendered: nothing lost, nothing from another session.
                int[] expectedPrompt = tiny.Model.Tokenizer.Encode(format.Render(history, new(false, null, null)), addSpecialTokens: false);
                if (record.PromptIds.Length == 0)
                {
                    if (result.Finished.Error is null)
                        throw new Xunit.Sdk.XunitException($"{id} turn {turn}: {result.Finished} but no prompt was recorded");
                }
                else if (!expectedPrompt.SequenceEqual(record.PromptIds))
                {
                    throw new Xunit.Sdk.XunitException($"{id} turn {turn}: {result.Finished}\nexpected prompt: {tiny.Model.Tokenizer.Decode(expectedPrompt)}\nactual prompt: {tiny.Model.Tokenizer.Decode(record.PromptIds)}\nlast outcomes: "
                        + string.Join("\n", outcomes.Where(o => o.SessionId == id).OrderBy(o => o.Turn).TakeLast(3).Select(o => $"{o.Turn}: {o.Result.Finished} text='{o.Result.Text}'")));
                }
                int[] expected = reference.GenerateInConversation(id, expectedPrompt, tiny.Model.SamplingFor(request.Options), MaxNewTokens);
                outcomes.Add(new Outcome(id, turn, result, record.PromptIds, record.GeneratedIds, expected));
                if (result.Text.Length > 0 || result.Reasoning.Length > 0 || result.ToolCalls.Count > 0 || result.Finished.Error is null)
                {
                    history.Add(new ChatMessage
                    {
                        Role = ChatMessage.Assistant,
                        Content = result.Text,
                        Reasoning = result.Reasoning.Length > 0 ? result.Reasoning : null,
                        ToolCalls = result.ToolCalls.Count > 0 ? result.ToolCalls : null,
                    });
                }
            }
            // The store kept exactly this history.
            var transcript = await client.GetTranscriptAsync(id);
            Assert.Equal(history.Select(m => (m.Role, m.Content ?? "")), transcript.Select(m => (m.Role, m.Content ?? "")));
        }

        await Task.WhenAll(Enumerable.Range(0, Sessions).Select(Drive)).WaitAsync(TimeSpan.FromMinutes(8));

        var all = outcomes.ToArray();
        Assert.Equal(Sessions * TurnsPerSession, all.Length);
        int exact = all.Count(o => o.Result.Finished.Error is null && o.Generated.SequenceEqual(o.Expected));
        var failed = all.Where(o => o.Result.Finished.Error is not null).ToArray();
        foreach (var o in failed)
            output.WriteLine($"{o.SessionId} turn {o.Turn}: {o.Result.Finished.Reason} {o.Result.Finished.Error}");
        foreach (var o in all.Where(o => o.Result.Finished.Error is null && !o.Generated.SequenceEqual(o.Expected)))
            output.WriteLine($"MISMATCH {o.SessionId} turn {o.Turn}: got [{string.Join(",", o.Generated)}] expected [{string.Join(",", o.Expected)}] {o.Result.Finished}");
        foreach (var role in Enum.GetValues<ActorRole>())
            output.WriteLine($"injected into {role}: {client.Faults.Injected(role)}");
        output.WriteLine($"exact {exact} of {all.Length}, errors {failed.Length}");

        Assert.True(exact >= 0.99 * all.Length, $"only {exact} of {all.Length} turns completed with the fault-free tokens");
        // Every turn that did not complete exactly ended with a clear error event.
        foreach (var o in all.Where(o => !(o.Result.Finished.Error is null && o.Generated.SequenceEqual(o.Expected))))
        {
            Assert.Equal(FinishReason.Error, o.Result.Finished.Reason);
            Assert.False(string.IsNullOrWhiteSpace(o.Result.Finished.Error));
        }
        // Faults really happened at every role (this model has no vision tower, so no vision encoder runs).
        Assert.Null(tiny.Model.Checkpoint.Vision);
        foreach (var role in Enum.GetValues<ActorRole>().Where(r => r != ActorRole.VisionEncoder))
            Assert.True(client.Faults.Injected(role) > 0, $"no fault was injected into {role}");

        // Faults off: every session serves normally (two more turns; the second reuses the cache).
        client.Faults.Active = false;
        await Task.WhenAll(Enumerable.Range(0, Sessions).Select(async session =>
        {
            for (int extra = 0; extra < 2; extra++)
            {
                var request = new TurnRequest
                {
                    SessionId = $"chaos-{session}",
                    Messages = [ChatMessage.FromUser($"one more, {extra}")],
                    Options = new GenerationOptions { Temperature = 0, MaxNewTokens = MaxNewTokens },
                };
                var result = await client.RunTurnAsync(request);
                Assert.Null(result.Finished.Error);
                var record = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(request.TurnId));
                Assert.Equal(reference.Generate(record.PromptIds, tiny.Model.SamplingFor(request.Options), MaxNewTokens), record.GeneratedIds);
                if (extra == 1)
                    Assert.True(result.Finished.Usage.CachedTokens > 0, $"chaos-{session}: nothing cached on the second turn after chaos");
            }
        })).WaitAsync(TimeSpan.FromMinutes(2));
    }
}
