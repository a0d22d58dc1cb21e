namespace Pipeline.Model.Tests.Forward;

/// <summary>All 262,144 last-position logits, and 24-step greedy continuations.</summary>
public sealed class GreedyAndFullLogitsTests(TinyEngines engines) : IClassFixture<TinyEngines>
{
    [Theory]
    [InlineData("chat_template")]
    [InlineData("random_6w")]
    public void LastPositionLogits_MatchBothFilesEverywhere(string name)
    {
        var sequence = ExpectedFile.Reference.Value.Sequence(name);
        using var session = engines.Default.OpenSession();
        session.Prefill(sequence.Ids);
        var logits = session.Logits;

        foreach (var (file, tolerance) in new[] { (ExpectedFile.Reference.Value, LogitChecker.ReferenceTolerance), (ExpectedFile.LlamaCpp.Value, LogitChecker.LlamaCppTolerance) })
        {
            var expected = file.Sequence(name).LastLogits();
            Assert.Equal(expected.Length, logits.Length);
            double worst = 0;
            int worstId = -1;
            for (int id = 0; id < expected.Length; id++)
            {
                double difference = Math.Abs(expected[id] - logits[id]);
                if (difference > worst)
                    (worst, worstId) = (difference, id);
            }
            Assert.True(worst <= tolerance, $"{name} vs {file.Name}: max |diff| {worst:E3} at id {worstId}");
        }
    }

    /// <summary>
    /// Teacher-forced along each file's own greedy tokens: our argmax equals theirs wherever their
    /// top1 - top2 margin is clear (llama.cpp: 5e-2 as the issue states; the f32 reference: 1e-2,
    /// twice its tolerance), and the logits after each fed token stay within tolerance.
    /// </summary>
    [Theory]
    [MemberData(nameof(TinyEngines.SequenceNames), MemberType = typeof(TinyEngines))]
    public void GreedyContinuation_MatchesWhereTheMarginIsClear(string name)
    {
        using var session = engines.Default.OpenSession();
        var ids = ExpectedFile.Reference.Value.Sequence(name).Ids;
        session.Prefill(ids);
        var promptLogits = session.Logits.ToArray();

        foreach (var (file, tolerance, clearMargin) in new[]
        {
            (ExpectedFile.LlamaCpp.Value, LogitChecker.LlamaCppTolerance, 5e-2),
            (ExpectedFile.Reference.Value, LogitChecker.ReferenceTolerance, 1e-2),
        })
        {
            session.Truncate(ids.Length);
            var steps = file.Sequence(name).Greedy;
            Assert.Equal(24, steps.Length);
            ReadOnlySpan<float> logits = promptLogits;
            int compared = 0;
            for (int step = 0; step < steps.Length; step++)
            {
                if (steps[step].Margin > clearMargin)
                {
                    Assert.True(steps[step].Token == LogitMath.ArgMax(logits),
                        $"{name} step {step} vs {file.Name}: argmax {LogitMath.ArgMax(logits)}, expected {steps[step].Token} (margin {steps[step].Margin})");
                    compared++;
                }
                if (steps[step].Next is not { } next)
                    break;
                session.Decode(steps[step].Token);
                logits = session.Logits;
                double difference = next.MaxDifference(logits, file.ProbeIds, LogitMath.LogSumExp(logits));
                Assert.True(difference <= tolerance, $"{name} after greedy step {step} vs {file.Name}: max |diff| {difference:E3}");
            }
            Assert.True(compared >= 20, $"{name} vs {file.Name}: only {compared} steps had a clear margin");
            session.Truncate(ids.Length);
        }
    }
}
