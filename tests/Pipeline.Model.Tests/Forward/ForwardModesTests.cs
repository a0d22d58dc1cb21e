namespace Pipeline.Model.Tests.Forward;

/// <summary>
/// Every position of every tiny-a sequence, fed in each way a session can be fed, against
/// llama.cpp (5e-2) and the exact f32 reference (5e-3).
/// </summary>
public sealed class ForwardModesTests(TinyEngines engines) : IClassFixture<TinyEngines>
{
    [Theory]
    [MemberData(nameof(TinyEngines.SequenceNames), MemberType = typeof(TinyEngines))]
    public void OnePrefill(string name)
    {
        var checker = new LogitChecker(name);
        using var session = engines.Default.OpenSession();
        session.Prefill(checker.Ids, checker.Check);
        checker.AssertWithinTolerance("one prefill", checker.Ids.Length);
    }

    [Theory]
    [MemberData(nameof(TinyEngines.SequenceNames), MemberType = typeof(TinyEngines))]
    public void PrefillInBlocksOfSevenOnWindowSizedRings(string name)
    {
        var checker = new LogitChecker(name);
        using var session = engines.Small.OpenSession();
        session.Prefill(checker.Ids, checker.Check);
        checker.AssertWithinTolerance("blocks of 7", checker.Ids.Length);
    }

    [Theory]
    [MemberData(nameof(TinyEngines.SequenceNames), MemberType = typeof(TinyEngines))]
    public void TokenByToken(string name)
    {
        var checker = new LogitChecker(name);
        using var session = engines.Small.OpenSession();
        for (int i = 0; i < checker.Ids.Length; i++)
        {
            if (i == 0)
                session.Prefill(checker.Ids.AsSpan(0, 1));
            else
                session.Decode(checker.Ids[i]);
            checker.Check(i, session.Logits);
        }
        checker.AssertWithinTolerance("token by token", checker.Ids.Length);
    }

    [Theory]
    [MemberData(nameof(TinyEngines.SequenceNames), MemberType = typeof(TinyEngines))]
    public void PrefillTenThenDecode(string name)
    {
        var checker = new LogitChecker(name);
        var ids = checker.Ids;
        int prompt = Math.Min(10, ids.Length);
        using var session = engines.Default.OpenSession();
        session.Prefill(ids.AsSpan(0, prompt), checker.Check);
        for (int i = prompt; i < ids.Length; i++)
        {
            session.Decode(ids[i]);
            checker.Check(i, session.Logits);
        }
        checker.AssertWithinTolerance("prefill 10 then decode", ids.Length);
    }

    /// <summary>
    /// Truncate to half (deep: the rings wrapped past it on long sequences, so the session replays),
    /// re-extend by prefill; truncate 3 back (within the ring reserve: reused), re-extend by decode.
    /// </summary>
    [Theory]
    [InlineData("text_short")]
    [InlineData("chat_brief_example")]
    [InlineData("chat_template")]
    [InlineData("chat_multiturn")]
    [InlineData("random_3w")]
    [InlineData("random_6w")]
    public void TruncateAndReextend(string name)
    {
        var checker = new LogitChecker(name);
        var ids = checker.Ids;
        using var session = engines.Default.OpenSession();
        session.Prefill(ids);

        int half = ids.Length / 2;
        session.Truncate(half);
        Assert.Equal(half, session.Length);
        session.Prefill(ids.AsSpan(half), (i, logits) => checker.Check(half + i, logits));

        int tail = ids.Length - 3;
        session.Truncate(tail);
        Assert.Equal(tail, session.CachedLength);
        for (int i = tail; i < ids.Length; i++)
        {
            session.Decode(ids[i]);
            checker.Check(i, session.Logits);
        }
        checker.AssertWithinTolerance("truncate and re-extend", ids.Length - half + 3);
    }

    /// <summary>Rings of exactly the window: any truncation after a wrap replays, and the logits stay right.</summary>
    [Theory]
    [InlineData("random_3w")]
    [InlineData("chat_multiturn")]
    public void TruncateOnWindowSizedRingsReplays(string name)
    {
        var checker = new LogitChecker(name);
        var ids = checker.Ids;
        using var session = engines.Small.OpenSession();
        session.Prefill(ids);
        int keep = ids.Length - 5;
        session.Truncate(keep);
        Assert.Equal(keep, session.Length);
        Assert.Equal(0, session.CachedLength);   // the 16-slot rings no longer hold positions keep-15..keep-1
        for (int i = keep; i < ids.Length; i++)
        {
            session.Decode(ids[i]);
            checker.Check(i, session.Logits);
        }
        checker.AssertWithinTolerance("truncate on window-sized rings", 5);
    }
}
