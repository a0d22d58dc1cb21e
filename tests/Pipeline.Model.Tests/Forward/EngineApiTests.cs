using Pipeline.Kernels.Reference;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Forward;

/// <summary>The engine API's contract: errors, state after errors, truncation, batching, allocation.</summary>
public sealed class EngineApiTests(TinyEngines engines) : IClassFixture<TinyEngines>
{
    private static readonly int[] Prompt = ExpectedFile.Reference.Value.Sequence("random_6w").Ids;

    [Theory]
    [InlineData(262_144)]
    [InlineData(-1)]
    [InlineData(int.MaxValue)]
    public void IdOutsideTheVocabulary_IsRejectedNamingIdAndVocab(int id)
    {
        using var session = engines.Default.OpenSession();
        session.Prefill([2, 105]);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => session.Prefill([2, id, 7]));
        Assert.Contains($"token id {id} at index 1", error.Message);
        Assert.Contains("vocab_size 262144", error.Message);
        var decodeError = Assert.Throws<ArgumentOutOfRangeException>(() => session.Decode(id));
        Assert.Contains($"token id {id}", decodeError.Message);
        // Nothing changed.
        Assert.Equal(2, session.Length);
        Assert.Equal(2, session.CachedLength);
        Assert.Equal(262_144, session.Logits.Length);
    }

    [Fact]
    public void EmptyPrompt_IsRejected()
    {
        using var session = engines.Default.OpenSession();
        var error = Assert.Throws<ArgumentException>(() => session.Prefill([]));
        Assert.Contains("prompt is empty", error.Message);
        Assert.Equal(0, session.Length);
    }

    [Fact]
    public void ContextBeyondMaxPositions_IsRejectedNamingBothNumbers()
    {
        using var session = engines.Default.OpenSession();
        var error = Assert.Throws<ArgumentException>(() => session.Prefill(new int[4097]));
        Assert.Contains("4097 tokens", error.Message);
        Assert.Contains("maximum of 4096 positions (max_position_embeddings)", error.Message);

        using var limited = Engine.Load(TinyEngines.ModelDirectory, new EngineOptions { MaxContext = 32 });
        using var small = limited.OpenSession();
        small.Prefill(Prompt.AsSpan(0, 30));
        var overflow = Assert.Throws<ArgumentException>(() => small.Prefill(Prompt.AsSpan(30, 5)));
        Assert.Contains("context of 35 tokens (30 held + 5 new)", overflow.Message);
        Assert.Contains("maximum of 32 positions", overflow.Message);
        small.Prefill(Prompt.AsSpan(30, 2));
        Assert.Throws<ArgumentException>(() => small.Decode(5));
        Assert.Equal(32, small.Length);
    }

    [Fact]
    public void MisuseOfTheSession_FailsClearly()
    {
        using var session = engines.Default.OpenSession();
        Assert.Contains("no logits yet", Assert.Throws<InvalidOperationException>(() => session.Logits.Length).Message);
        session.Prefill(Prompt.AsSpan(0, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Truncate(6));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Truncate(-1));
        session.Truncate(3);
        Assert.Throws<InvalidOperationException>(() => session.Logits.Length);
        session.Reset();
        Assert.Equal(0, session.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => Engine.Load(TinyEngines.ModelDirectory, new EngineOptions { MaxContext = 5000 }));
        Assert.Throws<CheckpointFormatException>(() => Engine.Load(Path.Combine(TinyEngines.ModelDirectory, "missing")));
    }

    [Fact]
    public void Truncation_ReusesTheCacheWithinTheRingReserveAndReplaysBeyond()
    {
        // Default engine: window 16 + reserve 64 = 80-slot rings. After 99 tokens they hold 19..98.
        using var session = engines.Default.OpenSession();
        session.Prefill(Prompt);
        Assert.Equal(19, session.Cache.OldestSlidingPosition);
        Assert.True(session.Cache.CanTruncateTo(34));    // position 34 needs 19..33
        Assert.False(session.Cache.CanTruncateTo(33));   // needs 18, gone
        Assert.True(session.Cache.CanTruncateTo(99));

        session.Truncate(34);
        Assert.Equal(34, session.CachedLength);
        session.Truncate(33);
        Assert.Equal(33, session.Length);
        Assert.Equal(0, session.CachedLength);           // the next prefill replays 0..32

        var checker = new LogitChecker("random_6w");
        session.Prefill(Prompt.AsSpan(33, 10), (i, logits) => checker.Check(33 + i, logits));
        Assert.Equal(43, session.CachedLength);
        checker.AssertWithinTolerance("replay after deep truncation", 10);
    }

    [Fact]
    public void TwoSessionsInOneBatch_AndLayersInGroups_EqualSeparateRuns()
    {
        var engine = engines.Default;
        var forward = engine.Forward;
        int vocab = engine.VocabSize;
        int[] a = Prompt[..9], b = Prompt[40..52];

        // Solo runs through the engine API.
        var soloA = LastLogits(engine, a);
        var soloB = LastLogits(engine, b);

        // One batch, both sessions, layers run in two groups as an actor pipeline would.
        using var cacheA = engine.OpenSession();
        using var cacheB = engine.OpenSession();
        using var batch = forward.CreateBatch(32);
        using var work = forward.CreateWorkspace(32, 2);
        using (var unreserved = new KvCache(engine.Backend, engine.Config, 512, 0, 4))
            Assert.Contains("call KvCache.Reserve first", Assert.Throws<InvalidOperationException>(() => batch.Add(unreserved, a, 0)).Message);
        cacheA.Cache.Reserve(a.Length);
        cacheB.Cache.Reserve(b.Length);
        batch.Add(cacheA.Cache, a, 0);
        batch.Add(cacheB.Cache, b, 0);
        forward.Embed(batch);
        forward.RunLayers(batch, work, 0, 2);
        forward.RunLayers(batch, work, 2, engine.Config.NumHiddenLayers);
        cacheA.Cache.Advance(a.Length);
        cacheB.Cache.Advance(b.Length);
        forward.Head(batch, work, [a.Length - 1, a.Length + b.Length - 1]);
        var logits = new float[2 * vocab];
        engine.Backend.Read(forward.LogitRows(work, 2), logits);

        for (int id = 0; id < vocab; id++)
        {
            Assert.True(Math.Abs(logits[id] - soloA[id]) <= 1e-4, $"session A, id {id}");
            Assert.True(Math.Abs(logits[vocab + id] - soloB[id]) <= 1e-4, $"session B, id {id}");
        }

        // Then one decode row per session in a single batch.
        int nextA = LogitMath.ArgMax(soloA), nextB = LogitMath.ArgMax(soloB);
        batch.Clear();
        cacheA.Cache.Reserve(a.Length + 1);
        cacheB.Cache.Reserve(b.Length + 1);
        batch.Add(cacheA.Cache, [nextA], a.Length);
        batch.Add(cacheB.Cache, [nextB], b.Length);
        forward.Embed(batch);
        forward.RunLayers(batch, work, 0, engine.Config.NumHiddenLayers);
        forward.Head(batch, work, [0, 1]);
        engine.Backend.Read(forward.LogitRows(work, 2), logits);
        var decodedA = LastLogits(engine, [.. a, nextA]);
        var decodedB = LastLogits(engine, [.. b, nextB]);
        Assert.True(Math.Abs(logits[nextA] - decodedA[nextA]) <= 1e-4);
        Assert.True(Math.Abs(logits[vocab + nextB] - decodedB[nextB]) <= 1e-4);
        Assert.Equal(LogitMath.ArgMax(decodedA), LogitMath.ArgMax(logits.AsSpan(0, vocab)));
        Assert.Equal(LogitMath.ArgMax(decodedB), LogitMath.ArgMax(logits.AsSpan(vocab, vocab)));
    }

    private static float[] LastLogits(Engine engine, int[] ids)
    {
        using var session = engine.OpenSession();
        session.Prefill(ids);
        return session.Logits.ToArray();
    }

    [Fact]
    public void DecodeStep_AllocatesNothingAfterWarmUp()
    {
        using var session = engines.Default.OpenSession();
        session.Prefill(Prompt.AsSpan(0, 10));
        int next = LogitMath.ArgMax(session.Logits);
        for (int i = 0; i < 4; i++)
        {
            session.Decode(next);
            next = LogitMath.ArgMax(session.Logits);
        }

        long allocated = SteadyStateAllocations.Measure(() =>
        {
            for (int i = 0; i < 4; i++)
            {
                session.Decode(next);
                next = LogitMath.ArgMax(session.Logits);
            }
        });
        Assert.Equal(0, allocated);
        Assert.Equal(30, session.Length);
    }

    [Fact]
    public void CacheBytes_FollowTheFormula()
    {
        var text = engines.Default.Config;
        // tiny-a: sliding 2 KV heads x 32, full 1 x 64: 512 bytes per token per layer either way.
        Assert.Equal(512, KvCache.BytesPerToken(text, 0));
        Assert.Equal(512, KvCache.BytesPerToken(text, 2));

        // Small engine: caches start at 8 slots and double; rings stop at the 16-token window.
        using var session = engines.Small.OpenSession();
        Assert.Equal(KvCache.BytesFor(text, 8, 0), session.Cache.AllocatedBytes);
        session.Prefill(Prompt.AsSpan(0, 20));
        Assert.Equal(KvCache.BytesFor(text, 32, 0), session.Cache.AllocatedBytes);
        Assert.Equal(2 * 32 * 512 + 4 * 16 * 512, session.Cache.AllocatedBytes);
        session.Prefill(Prompt.AsSpan(20, 50));
        Assert.Equal(KvCache.BytesFor(text, 128, 0), session.Cache.AllocatedBytes);
    }

    [Fact]
    public void CacheBytes_Of31B_MatchTheDocumentedFormula()
    {
        var text = Gemma31B();
        Assert.Equal(32_768, KvCache.BytesPerToken(text, 0));    // sliding: 2 (K,V) * 4 bytes * 16 heads * 256
        Assert.Equal(16_384, KvCache.BytesPerToken(text, 5));    // full: 2 * 4 * 4 heads * 512
        foreach (long n in new long[] { 1, 100, 1024, 1025, 4096, 131_072 })
        {
            foreach (int reserve in new[] { 0, 64 })
                Assert.Equal(10 * 16_384 * n + 50 * 32_768 * Math.Min(n, 1024 + reserve), KvCache.BytesFor(text, n, reserve));
        }
        Assert.Equal(2_348_810_240, KvCache.BytesFor(text, 4096, 0));   // 2.19 GiB at 4k context
    }

    private static Gemma4TextConfig Gemma31B() => new(
        HiddenSize: 5376, NumHiddenLayers: 60, IntermediateSize: 21504, NumAttentionHeads: 32, NumKeyValueHeads: 16,
        SlidingHeadDim: 256, NumGlobalKeyValueHeads: 4, GlobalHeadDim: 512, AttentionKEqV: true,
        LayerTypes: Enumerable.Range(0, 60).Select(i => (i + 1) % 6 == 0 ? AttentionKind.Full : AttentionKind.Sliding).ToArray(),
        SlidingWindow: 1024, SlidingRope: new RopeParameters("default", 1e4, 1.0), FullRope: new RopeParameters("proportional", 1e6, 0.25),
        FinalLogitSoftcapping: 30f, RmsNormEps: 1e-6f, VocabSize: 262_144, MaxPositionEmbeddings: 262_144, TieWordEmbeddings: true,
        HiddenActivation: "gelu_pytorch_tanh");

    [Fact]
    public void RopeInverseFrequencies_FollowTheIssue()
    {
        var text = Gemma31B();
        var sliding = Gemma4Forward.InverseFrequencies(text.SlidingRope, 256);
        Assert.Equal(128, sliding.Length);
        Assert.Equal(1f, sliding[0]);
        Assert.Equal((float)Math.Pow(1e4, -2.0 * 127 / 256), sliding[127]);
        var full = Gemma4Forward.InverseFrequencies(text.FullRope, 512);
        Assert.Equal(256, full.Length);
        Assert.Equal((float)Math.Pow(1e6, -2.0 * 63 / 512), full[63]);   // denominator is the full head dim
        Assert.All(full[64..], f => Assert.Equal(0f, f));                  // int(0.25 * 512 / 2) = 64 rotated pairs
    }

    /// <summary>The reference backend runs the same forward: the contract is complete and its twin agrees.</summary>
    [Fact]
    public void ReferenceBackend_RunsTheModel()
    {
        using var reference = new ReferenceBackend();
        using var engine = Engine.Load(TinyEngines.ModelDirectory, new EngineOptions { Backend = reference, MaxLogitRows = 1, InitialCacheCapacity = 16 });
        var checker = new LogitChecker("text_short");
        using var session = engine.OpenSession();
        session.Prefill(checker.Ids);
        checker.Check(10, session.Logits);
        checker.AssertWithinTolerance("reference backend", 1);
    }

    [Fact]
    public void LogitMath_AgreesWithAFullSort()
    {
        using var session = engines.Default.OpenSession();
        session.Prefill(Prompt.AsSpan(0, 3));
        var logits = session.Logits.ToArray();
        logits[5] = logits[7] = logits.Max();   // a tie at the top: lower id first
        var sorted = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(16).ToArray();
        var top = new int[16];
        LogitMath.TopK(logits, top);
        Assert.Equal(sorted, top);
        Assert.Equal(5, LogitMath.ArgMax(logits));
        double exact = Math.Log(logits.Sum(v => Math.Exp(v)));
        Assert.Equal(exact, LogitMath.LogSumExp(logits), 1e-5);
        Assert.Equal(exact, FastMath.LogSumExp(logits), 1e-5);
    }
}
