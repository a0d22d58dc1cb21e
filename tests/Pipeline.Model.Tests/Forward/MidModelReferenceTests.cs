using Pipeline.Model.TestModels;
using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.Forward;

/// <summary>
/// The "mid" preset (hidden 256, UD-Q2_K_XL mix, window 16) generated once with a fixed seed, two
/// engines on it (one block per prompt; blocks of 7 on window-sized rings) and the independent float
/// forward's logits for each test sequence.
/// </summary>
public sealed class MidModel : IDisposable
{
    public const ulong Seed = 31;

    private readonly TempFolder _folder = new();
    private readonly Dictionary<string, float[][]> _expected = [];

    public MidModel()
    {
        TestModelGenerator.Generate(TestModelPreset.Mid, TestModelQuant.UdQ2Kxl, Seed, _folder.Path);
        Reference = new IndependentGemma4(_folder.Path);
        Default = Engine.Load(_folder.Path);
        Small = Engine.Load(_folder.Path, new EngineOptions
        {
            MaxBatchRows = 7,
            MaxLogitRows = 3,
            SlidingCacheReserve = 0,
            InitialCacheCapacity = 8,
        });
    }

    internal IndependentGemma4 Reference { get; }

    public Engine Default { get; }

    public Engine Small { get; }

    /// <summary>Lengths 1, 21, 48 (3 windows) and 96 (6 windows) of random ids.</summary>
    public static TheoryData<string> SequenceNames() => new("one", "short", "3w", "6w");

    public static int[] Ids(string name)
    {
        int length = name switch { "one" => 1, "short" => 21, "3w" => 48, "6w" => 96, _ => throw new ArgumentException(name) };
        var random = new Random(length);
        return [2, .. Enumerable.Range(1, length - 1).Select(_ => random.Next(TestModelPreset.Mid.VocabSize))];
    }

    internal float[][] Expected(string name)
    {
        lock (_expected)
        {
            if (!_expected.TryGetValue(name, out var logits))
                _expected[name] = logits = Reference.Logits(Ids(name));
            return logits;
        }
    }

    public void Dispose()
    {
        Default.Dispose();
        Small.Dispose();
        _folder.Dispose();
    }
}

/// <summary>Issue 3's acceptance on a make-test-model checkpoint at hidden 256: every mode against <see cref="IndependentGemma4"/>.</summary>
public sealed class MidModelReferenceTests(MidModel mid) : IClassFixture<MidModel>
{
    private const double Tolerance = 5e-3;

    [Fact]
    public void PresetHasBothLayerTypesAndTheRecipe()
    {
        var p = TestModelPreset.Mid;
        Assert.True(p.HiddenSize >= 256);
        Assert.Contains(Enumerable.Range(0, p.NumLayers), p.IsFullAttention);
        Assert.Contains(Enumerable.Range(0, p.NumLayers), i => !p.IsFullAttention(i));
        Assert.True(p.NumHeads > p.NumKvHeads && p.NumHeads > p.NumGlobalKvHeads);   // GQA on both types
        var bits = TestModelPlan.Create(p, TestModelQuant.UdQ2Kxl).Weights.Select(w => w.Bits).ToHashSet();
        Assert.Equal([0, 2, 3, 4], bits.Order());
        Assert.Equal(p, TestModelPreset.Parse("mid"));
    }

    [Theory]
    [MemberData(nameof(MidModel.SequenceNames), MemberType = typeof(MidModel))]
    public void OnePrefill(string name)
    {
        var checker = new Checker(mid.Expected(name));
        using var session = mid.Default.OpenSession();
        session.Prefill(MidModel.Ids(name), checker.Check);
        checker.AssertAll("one prefill", name);
    }

    [Theory]
    [MemberData(nameof(MidModel.SequenceNames), MemberType = typeof(MidModel))]
    public void PrefillInBlocksOfSevenOnWindowSizedRings(string name)
    {
        var checker = new Checker(mid.Expected(name));
        using var session = mid.Small.OpenSession();
        session.Prefill(MidModel.Ids(name), checker.Check);
        checker.AssertAll("blocks of 7", name);
    }

    [Theory]
    [MemberData(nameof(MidModel.SequenceNames), MemberType = typeof(MidModel))]
    public void TokenByToken(string name)
    {
        var ids = MidModel.Ids(name);
        var checker = new Checker(mid.Expected(name));
        using var session = mid.Small.OpenSession();
        session.Prefill(ids.AsSpan(0, 1));
        checker.Check(0, session.Logits);
        for (int i = 1; i < ids.Length; i++)
        {
            session.Decode(ids[i]);
            checker.Check(i, session.Logits);
        }
        checker.AssertAll("token by token", name);
    }

    [Theory]
    [MemberData(nameof(MidModel.SequenceNames), MemberType = typeof(MidModel))]
    public void PrefillTenThenDecode(string name)
    {
        var ids = MidModel.Ids(name);
        var checker = new Checker(mid.Expected(name));
        int prompt = Math.Min(10, ids.Length);
        using var session = mid.Default.OpenSession();
        session.Prefill(ids.AsSpan(0, prompt), checker.Check);
        for (int i = prompt; i < ids.Length; i++)
        {
            session.Decode(ids[i]);
            checker.Check(i, session.Logits);
        }
        checker.AssertAll("prefill 10 then decode", name);
    }

    /// <summary>Truncate to half (past a ring wrap on the long ones: replays), re-extend by prefill; truncate 3 back, re-extend by decode; on both engines.</summary>
    [Theory]
    [InlineData("short")]
    [InlineData("3w")]
    [InlineData("6w")]
    public void TruncateAndReextend(string name)
    {
        var ids = MidModel.Ids(name);
        foreach (var engine in new[] { mid.Default, mid.Small })
        {
            var checker = new Checker(mid.Expected(name));
            using var session = engine.OpenSession();
            session.Prefill(ids);
            int half = ids.Length / 2;
            session.Truncate(half);
            session.Prefill(ids.AsSpan(half), (i, logits) => checker.Check(half + i, logits));
            int tail = ids.Length - 3;
            session.Truncate(tail);
            for (int i = tail; i < ids.Length; i++)
            {
                session.Decode(ids[i]);
                checker.Check(i, session.Logits);
            }
            checker.AssertAll($"truncate and re-extend (MaxBatchRows {engine.Options.MaxBatchRows})", name, expectedChecks: ids.Length - half + 3);
        }
    }

    /// <summary>
    /// 40 greedy tokens by decode after a 3-window prompt; at each step the reference, fed the same
    /// tokens, picks the same argmax wherever its top1-top2 margin exceeds 2 x the tolerance.
    /// </summary>
    [Fact]
    public void GreedyContinuationEqualsTheReference()
    {
        var prompt = MidModel.Ids("3w");
        var tokens = new List<int>(prompt);
        using var session = mid.Default.OpenSession();
        session.Prefill(prompt);
        for (int step = 0; step < 40; step++)
        {
            int next = ArgMax(session.Logits);
            tokens.Add(next);
            session.Decode(next);
        }

        var expected = mid.Reference.Logits(tokens);
        int compared = 0;
        for (int position = prompt.Length - 1; position < tokens.Count - 1; position++)
        {
            var row = expected[position];
            int best = ArgMax(row);
            float second = row.Where((_, i) => i != best).Max();
            if (row[best] - second <= 2 * Tolerance)
                continue;
            compared++;
            Assert.True(best == tokens[position + 1], $"greedy step {position + 1 - prompt.Length}: engine chose {tokens[position + 1]}, reference {best} (margin {row[best] - second:E2})");
        }
        Assert.True(compared >= 30, $"only {compared} of 40 greedy steps had a clear margin");
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best])
                best = i;
        return best;
    }

    private sealed class Checker(float[][] expected)
    {
        private double _worst;
        private int _worstPosition = -1, _checked;

        public void Check(int position, ReadOnlySpan<float> logits)
        {
            var row = expected[position];
            Assert.Equal(row.Length, logits.Length);
            for (int i = 0; i < row.Length; i++)
            {
                double difference = Math.Abs(row[i] - logits[i]);
                if (!(difference <= _worst))
                    (_worst, _worstPosition) = (double.IsNaN(difference) ? double.PositiveInfinity : difference, position);
            }
            _checked++;
        }

        public void AssertAll(string mode, string name, int? expectedChecks = null)
        {
            Assert.Equal(expectedChecks ?? expected.Length, _checked);
            Assert.True(_worst <= Tolerance, $"{mode}/{name}: max |logit diff| vs the independent forward {_worst:E3} at position {_worstPosition}");
        }
    }
}
