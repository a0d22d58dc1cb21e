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
    /// Teacher-forced along the files' greedy tokens (both files continue with the same tokens): our
    /// argmax equals theirs wherever their top1 - top2 margin is clear (llama.cpp: 5e-2 as the issue
    /// states; the f32 reference: 1e-2, twice its tolerance), and the logits after each fed token stay
    /// within tolerance of both.
    /// </summary>
    [Theory]
    [MemberData(nameof(TinyEngines.SequenceNames), MemberType = typeof(TinyEngines))]
    public void GreedyContinuation_MatchesWhereTheMarginIsClear(string name)
    {
        var files = new[]
        {
            (File: ExpectedFile.LlamaCpp.Value, Tolerance: LogitChecker.LlamaCppTolerance, ClearMargin: 5e-2),
            (File: ExpectedFile.Reference.Value, Tolerance: LogitChecker.ReferenceTolerance, ClearMargin: 1e-2),
        };
        var tokens = files[0].File.Sequence(name).Greedy.Select(g => g.Token).ToArray();
        Assert.Equal(tokens, files[1].File.Sequence(name).Greedy.Select(g => g.Token).ToArray());
        Assert.Equal(24, tokens.Length);

        using var session = engines.Default.OpenSession();
        session.Prefill(ExpectedFile.Reference.Value.Sequence(name).Ids);
        var compared = new int[files.Length];
        for (int step = 0; step < tokens.Length; step++)
        {
            int argMax = LogitMath.ArgMax(session.Logits);
            for (int f = 0; f < files.Length; f++)
            {
                var expected = files[f].File.Sequence(name).Greedy[step];
                if (expected.Margin > files[f].ClearMargin)
                {
                    Assert.True(expected.Token == argMax,
                        $"{name} step {step} vs {files[f].File.Name}: argmax {argMax}, expected {expected.Token} (margin {expected.Margin})");
                    compared[f]++;
                }
            }
            if (step == tokens.Length - 1)
                break;
            session.Decode(tokens[step]);
            double lse = FastMath.LogSumExp(session.Logits);
            for (int f = 0; f < files.Length; f++)
            {
                var next = files[f].File.Sequence(name).Greedy[step].Next!;
                double difference = next.MaxDifference(session.Logits, files[f].File.ProbeIds, lse);
                Assert.True(difference <= files[f].Tolerance, $"{name} after greedy step {step} vs {files[f].File.Name}: max |diff| {difference:E3}");
            }
        }
        Assert.All(compared, count => Assert.True(count >= 20, $"{name}: only {count} steps had a clear margin"));
    }
}
