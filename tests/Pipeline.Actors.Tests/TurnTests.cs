using System.Diagnostics;
using System.Threading.Channels;
using Pipeline.Actors.Telemetry;
using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

/// <summary>Cancellation, multi-turn cache reuse, refusals and the trace of a turn.</summary>
public class TurnTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    private static TurnRequest Request(string session, string text, int maxNewTokens, ulong seed = 7) => new()
    {
        SessionId = session,
        Messages = [ChatMessage.FromUser(text)],
        Options = new GenerationOptions { Temperature = 1.0f, TopK = 40, Seed = seed, MaxNewTokens = maxNewTokens },
    };

    private static string LongText(int words) => string.Join(' ', Enumerable.Range(0, words).Select(i => $"w{i}"));

    [Fact]
    public async Task Cancelling_mid_prefill_stops_within_one_step_and_frees_the_session()
    {
        var (system, client) = tiny.Start("pipeline.layer-groups = 2");
        using var _ = system;
        using var cancel = new CancellationTokenSource();
        const string session = "cancel-prefill";
        int stepsAtCancel = -1, stepsSeen = 0;
        // Cancel as soon as the first prefill chunk has gone through the last layer group.
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == PipelineTelemetry.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.DisplayName == "executor ForwardStep" && (string?)a.GetTagItem(PipelineTags.SessionId) == session
                    && (int?)a.GetTagItem(PipelineTags.LayerGroup) == 1)
                {
                    int seen = Interlocked.Increment(ref stepsSeen);
                    if (seen == 1)
                    {
                        stepsAtCancel = seen;
                        cancel.Cancel();
                    }
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        // ~300 prompt tokens: about 19 prefill steps of 16.
        var result = await client.RunTurnAsync(Request(session, LongText(150), 5), cancel.Token).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(FinishReason.Cancelled, result.Finished.Reason);
        Assert.Equal(0, result.Finished.Usage.CompletionTokens);
        Assert.True(result.Finished.Usage.PromptTokens > 250);
        // Within one step: at most the step in flight when the token was cancelled finished after it.
        Assert.InRange(Volatile.Read(ref stepsSeen), stepsAtCancel, stepsAtCancel + 1);

        // The session is free: the next turn runs to its end and reuses what was prefilled.
        var next = await client.RunTurnAsync(Request(session, "short", 3)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Null(next.Finished.Error);
        Assert.Equal(FinishReason.Length, next.Finished.Reason);
        Assert.True(next.Finished.Usage.CachedTokens >= 16, $"cached {next.Finished.Usage.CachedTokens}");
    }

    [Fact]
    public async Task Cancelling_mid_decode_stops_within_one_token_and_frees_the_session()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        using var cancel = new CancellationTokenSource();
        var channel = Channel.CreateBounded<ChatEvent>(64);
        // Greedy from a prompt whose answer is long: cancel at the first streamed text.
        var request = new TurnRequest
        {
            SessionId = "cancel-decode",
            Messages = [ChatMessage.FromUser("hello")],
            Options = new GenerationOptions { Temperature = 1.0f, Seed = 3, MaxNewTokens = 200 },
        };
        client.StartTurn(request, channel.Writer, cancel.Token);
        var events = new List<ChatEvent>();
        int deltasAtCancel = 0;
        await foreach (var e in channel.Reader.ReadAllAsync().WithCancellation(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token))
        {
            events.Add(e);
            if (e is TextDelta or ReasoningDelta && !cancel.IsCancellationRequested)
            {
                deltasAtCancel = events.Count;
                cancel.Cancel();
            }
        }
        var result = TurnResult.From(events);
        Assert.Equal(FinishReason.Cancelled, result.Finished.Reason);
        Assert.True(deltasAtCancel > 0, "nothing was streamed before the turn ended");
        // At most the token in flight when cancelled is still streamed.
        Assert.InRange(events.Count - 1, deltasAtCancel, deltasAtCancel + 1);
        Assert.True(result.Finished.Usage.CompletionTokens < 200);

        var next = await client.RunTurnAsync(Request("cancel-decode", "again", 2)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Null(next.Finished.Error);
        Assert.True(next.Finished.Usage.CachedTokens > 0);
        // The cancelled answer is in the transcript as far as it was streamed.
        var transcript = await client.GetTranscriptAsync("cancel-decode");
        Assert.Equal(["user", "assistant", "user", "assistant"], transcript.Select(m => m.Role));
        Assert.Equal(result.Text, transcript[1].Content);
    }

    [Fact]
    public async Task Turn_two_computes_only_the_new_suffix()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var completed = TurnRecording.Attach(system);
        var first = Request("multi", "What is the capital of France?", 4);
        var one = await client.RunTurnAsync(first).WaitAsync(TimeSpan.FromSeconds(60));
        var second = Request("multi", "And of Germany?", 4);
        using var spans = new SpanCollector();
        ActivityTraceId trace;
        TurnResult two;
        using (var root = SpanCollector.TestSource.StartActivity("turn two")!)
        {
            trace = root.TraceId;
            two = await client.RunTurnAsync(second).WaitAsync(TimeSpan.FromSeconds(60));
        }
        var record1 = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(first.TurnId));
        var record2 = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(second.TurnId));

        Assert.Equal(0, one.Finished.Usage.CachedTokens);
        int cached = two.Finished.Usage.CachedTokens;
        // Reused: the longest common prefix of what turn 1 left in the cache (its prompt and every generated
        // token but the last, which was never fed) and turn 2's prompt. (Gemma's template renders the
        // earlier answer without the empty thought channel of the generation prompt, so the match ends there.)
        int[] cachedAfterOne = [.. record1.PromptIds, .. record1.GeneratedIds[..^1]];
        int common = 0;
        while (common < cachedAfterOne.Length && common < record2.PromptIds.Length && cachedAfterOne[common] == record2.PromptIds[common])
            common++;
        Assert.Equal(common, cached);
        Assert.True(cached >= 10, $"only {cached} tokens reused");
        Assert.Equal(record2.PromptIds.Length, two.Finished.Usage.PromptTokens);
        // Only the suffix went through the executors (then one row per decoded token).
        int prefillRows = spans.Trace(trace)
            .Where(s => s.DisplayName == "executor ForwardStep")
            .Sum(s => (int)s.GetTagItem(PipelineTags.BatchRows)!) - (record2.GeneratedIds.Length - 1);
        Assert.Equal(record2.PromptIds.Length - cached, prefillRows);
    }

    [Fact]
    public async Task A_request_with_an_image_for_a_model_without_a_vision_tower_is_refused_with_a_clear_error()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var request = new TurnRequest
        {
            SessionId = "vision",
            Messages = [ChatMessage.FromUser("What is in this picture?") with { Images = [new ImagePart("image/png", [137, 80, 78, 71], null)] }],
        };
        var result = await client.RunTurnAsync(request).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(FinishReason.Error, result.Finished.Reason);
        Assert.Contains("has no vision tower", result.Finished.Error);
        Assert.Empty(await client.GetTranscriptAsync("vision"));
    }

    [Fact]
    public async Task A_prompt_beyond_the_context_limit_is_an_error_naming_both_numbers()
    {
        var (system, client) = tiny.Start("pipeline.max-context = 64");
        using var _ = system;
        var result = await client.RunTurnAsync(Request("too-long", LongText(80), 3)).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(FinishReason.Error, result.Finished.Reason);
        Assert.Matches(@"prompt has \d+ tokens.*context limit of 64 tokens", result.Finished.Error);
    }

    [Fact]
    public async Task The_trace_of_a_turn_links_every_hop_to_the_turn_span()
    {
        var (system, client) = tiny.Start("pipeline.layer-groups = 2\npipeline.tracing.record-content = on");
        using var _ = system;
        using var spans = new SpanCollector();
        var result = await client.RunTurnAsync(Request("traced", "Trace me", 3)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Null(result.Finished.Error);

        // The turn's span is a root (the caller had no trace) and carries the gen_ai attributes.
        Activity? turn = null;
        for (int i = 0; i < 200 && turn is null; i++, await Task.Delay(10))
            turn = spans.All().FirstOrDefault(s => s.DisplayName.StartsWith("chat ") && (string?)s.GetTagItem(PipelineTags.GenAiConversationId) == "traced");
        Assert.NotNull(turn);
        Assert.Equal(default, turn.ParentSpanId);
        Assert.Equal("chat", turn.GetTagItem(PipelineTags.GenAiOperation));
        Assert.Equal(tiny.Model.Name, turn.GetTagItem(PipelineTags.GenAiRequestModel));
        Assert.Equal(result.Finished.Usage.PromptTokens, turn.GetTagItem(PipelineTags.GenAiInputTokens));
        Assert.Equal(result.Finished.Usage.CompletionTokens, turn.GetTagItem(PipelineTags.GenAiOutputTokens));
        Assert.Equal(new[] { "length" }, turn.GetTagItem(PipelineTags.GenAiFinishReasons));
        Assert.Contains("Trace me", (string)turn.GetTagItem(PipelineTags.GenAiPrompt)!);

        var tree = spans.Trace(turn.TraceId);
        var byId = tree.ToDictionary(s => s.SpanId);
        // Every other span has its parent in this trace: no hop breaks the chain.
        foreach (var span in tree.Where(s => s != turn))
            Assert.True(byId.ContainsKey(span.ParentSpanId), $"{span.DisplayName} has a parent outside the trace");
        // Every hop is there, and every handled message recorded its mailbox wait.
        string[] expected =
        [
            "tokenizer RenderPrompt", "session PromptRendered", "tokenizer TokenizePrompt", "session PromptTokenized",
            "executor ForwardStep", "session StepComputed", "sampler SampleToken", "session TokenSampled",
            "detokenizer DetokenizeToken", "session TokenDetokenized",
        ];
        foreach (string name in expected)
            Assert.Contains(tree, s => s.DisplayName == name);
        foreach (var span in tree.Where(s => s != turn))
            Assert.NotNull(span.GetTagItem(PipelineTags.MailboxWaitMs));
        // Group 1's step spans are children of group 0's; group 0's of the turn.
        var executors = tree.Where(s => s.DisplayName == "executor ForwardStep").ToArray();
        foreach (var span in executors)
        {
            int group = (int)span.GetTagItem(PipelineTags.LayerGroup)!;
            var parent = byId[span.ParentSpanId];
            if (group == 0)
                Assert.Equal(turn.SpanId, parent.SpanId);
            else
                Assert.Equal((0, "executor ForwardStep"), ((int)parent.GetTagItem(PipelineTags.LayerGroup)!, parent.DisplayName));
            Assert.NotNull(span.GetTagItem(PipelineTags.BatchSize));
        }
        // Replies are children of the stage that answered.
        foreach (var reply in tree.Where(s => s.DisplayName == "session TokenSampled"))
            Assert.Equal("sampler SampleToken", byId[reply.ParentSpanId].DisplayName);
        foreach (var reply in tree.Where(s => s.DisplayName == "session StepComputed"))
            Assert.Equal((1, "executor ForwardStep"), ((int)byId[reply.ParentSpanId].GetTagItem(PipelineTags.LayerGroup)!, byId[reply.ParentSpanId].DisplayName));
    }
}
