using Pipeline.Kernels.Metal.Tests.Emulation;
using Pipeline.Model;

namespace Pipeline.Kernels.Metal.Tests.Forward;

/// <summary>
/// The whole tiny-a forward pass (6 layers, sliding and full attention, 262,144-row tied head) with
/// every op executed by the Metal kernels under emulation, against llama.cpp's logits (max |diff|
/// &lt;= 5e-2) and the exact f32 reference's (&lt;= 5e-3) — the same bars as the CPU backend.
/// The emulator runs each of the 64 threads of every head threadgroup as a fiber, so the test
/// computes the 262,144-row head for few positions: one prefill block, a decode tail, a truncation.
/// </summary>
public sealed class TinyForwardEmulatedTests : IDisposable
{
    private const double LlamaCppTolerance = 5e-2, ReferenceTolerance = 5e-3;

    private static readonly Lazy<TinyExpected> LlamaCpp = new(() => TinyExpected.Load("llamacpp"));
    private static readonly Lazy<TinyExpected> Reference = new(() => TinyExpected.Load("reference-f32"));

    private readonly EmulatedGpu _gpu = new();
    private readonly MetalBackend _metal;
    private readonly Engine _engine;

    public TinyForwardEmulatedTests()
    {
        _metal = new MetalBackend(_gpu);
        _engine = Engine.Load(TinyExpected.Fixture("ud-q2kxl"),
            new EngineOptions { Backend = _metal, MaxContext = 256, MaxBatchRows = 128, MaxLogitRows = 1 });
    }

    public void Dispose()
    {
        _engine.Dispose();
        _metal.Dispose();
    }

    [Fact]
    public void LongPrefillOverTheSlidingRing_AllFinalLogits_ThenGreedySteps()
    {
        const string name = "random_6w";   // 99 tokens: the 16-token window wraps six times
        var llama = LlamaCpp.Value.Sequences[name];
        var exact = Reference.Value.Sequences[name];
        using var session = _engine.OpenSession();
        session.Prefill(llama.Ids);

        var logits = session.Logits.ToArray();
        AssertAllClose(llama.LastLogits(), logits, LlamaCppTolerance, "llama.cpp");
        AssertAllClose(exact.LastLogits(), logits, ReferenceTolerance, "reference-f32");

        for (int step = 0; step < 2; step++)
        {
            int argmax = ArgMax(session.Logits);
            var expected = llama.Greedy[step];
            if (expected.Margin > LlamaCppTolerance)
                Assert.Equal(expected.Token, argmax);
            session.Decode(expected.Token);   // follow llama.cpp's path so the next logits are comparable
            AssertPosition(expected.Next!, session.Logits, LlamaCpp.Value.ProbeIds, LlamaCppTolerance, $"greedy step {step} vs llama.cpp");
            AssertPosition(exact.Greedy[step].Next!, session.Logits, Reference.Value.ProbeIds, ReferenceTolerance, $"greedy step {step} vs reference");
        }
    }

    [Fact]
    public void PrefillThenDecode_ThenTruncateAndReextend_EveryPosition()
    {
        const string name = "chat_template";   // 20 tokens: wraps the window once
        var llama = LlamaCpp.Value.Sequences[name];
        var exact = Reference.Value.Sequences[name];
        int[] ids = llama.Ids;
        using var session = _engine.OpenSession();

        void Check(int position)
        {
            AssertPosition(llama.Positions[position], session.Logits, LlamaCpp.Value.ProbeIds, LlamaCppTolerance, $"position {position} vs llama.cpp");
            AssertPosition(exact.Positions[position], session.Logits, Reference.Value.ProbeIds, ReferenceTolerance, $"position {position} vs reference");
        }

        session.Prefill(ids.AsSpan(0, 15));
        Check(14);
        for (int p = 15; p < ids.Length; p++)
        {
            session.Decode(ids[p]);
            Check(p);
        }
        AssertAllClose(exact.LastLogits(), session.Logits.ToArray(), ReferenceTolerance, "reference-f32 (last position)");

        session.Truncate(17);
        Assert.Equal(17, session.CachedLength);   // the ring still holds what position 17 needs
        session.Prefill(ids.AsSpan(17));
        Check(ids.Length - 1);
    }

    private static void AssertPosition(TinyPosition expected, ReadOnlySpan<float> logits, int[] probeIds, double tolerance, string what)
    {
        double difference = expected.MaxDifference(logits, probeIds);
        Assert.True(difference <= tolerance, $"{what}: max |diff| {difference} > {tolerance}");
    }

    private static void AssertAllClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        int at = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs(expected[i] - actual[i]);
            if (!(d <= worst))
            {
                worst = d;
                at = i;
            }
        }
        Assert.True(worst <= tolerance, $"{what}: max |diff| {worst} at id {at} > {tolerance}");
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }
}
