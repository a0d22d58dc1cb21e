using System.Text;

namespace Pipeline.Tokenizer.Tests;

public class StreamingDetokenizerTests
{
    private static readonly Tokenizer s_tokenizer = Tokenizer.LoadGemma4();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RandomIds_DeltasConcatenateToFullDecode(bool skipSpecial)
    {
        var random = new Random(skipSpecial ? 3 : 4);
        for (int trial = 0; trial < 1000; trial++)
        {
            int[] ids = DifferentialTests.RandomIds(random, s_tokenizer, random.Next(0, 60));
            string full = s_tokenizer.Decode(ids, skipSpecial);
            var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecial);
            var streamed = new StringBuilder();
            foreach (int id in ids)
            {
                var result = detokenizer.Push(id);
                Assert.False(result.Stopped);
                AssertWellFormed(result.Delta, ids);
                streamed.Append(result.Delta);
                Assert.True(full.StartsWith(streamed.ToString(), StringComparison.Ordinal), $"a delta was revised: [{string.Join(",", ids)}]");
            }
            string rest = detokenizer.Flush();
            AssertWellFormed(rest, ids);
            streamed.Append(rest);
            Assert.Equal(full, streamed.ToString());
        }
    }

    [Fact]
    public void ByteRunAcrossTokens_IsHeldUntilItEnds()
    {
        var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecialTokens: false);
        Assert.Equal("", detokenizer.Push(238 + 0xE4).Delta);
        Assert.Equal("", detokenizer.Push(238 + 0xB8).Delta);
        Assert.Equal("", detokenizer.Push(238 + 0xAD).Delta); // "中" is complete but a 4th byte could still spoil it
        Assert.Equal("中 Hello", detokenizer.Push(26352).Delta);
        Assert.Equal("", detokenizer.Push(238 + 0xE4).Delta);
        Assert.Equal("\uFFFD", detokenizer.Flush());
    }

    [Fact]
    public void SkippedSpecialToken_DoesNotEndAByteRun()
    {
        var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecialTokens: true);
        Assert.Equal("", detokenizer.Push(238 + 0xE4).Delta);
        Assert.Equal("", detokenizer.Push(2).Delta);
        Assert.Equal("", detokenizer.Push(238 + 0xB8).Delta);
        Assert.Equal("", detokenizer.Push(238 + 0xAD).Delta);
        Assert.Equal("中", detokenizer.Flush());
    }

    [Fact]
    public void StopStringAcrossTokens_IsNotEmitted()
    {
        int[] ids = s_tokenizer.Encode("The answer is 42.\nUser: thanks");
        var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecialTokens: false, ["\nUser:"]);
        var emitted = new StringBuilder();
        DetokenizerResult last = default;
        foreach (int id in ids)
        {
            last = detokenizer.Push(id);
            emitted.Append(last.Delta);
            if (last.Stopped)
                break;
        }
        Assert.True(last.Stopped);
        Assert.Equal("\nUser:", last.MatchedStop);
        Assert.Equal("The answer is 42.", emitted.ToString());
        Assert.True(detokenizer.Stopped);
        Assert.Equal(new DetokenizerResult("", true, "\nUser:"), detokenizer.Push(9259));
        Assert.Equal("", detokenizer.Flush());
    }

    [Fact]
    public void PossibleStopPrefix_IsHeldThenReleased()
    {
        var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecialTokens: false, ["STOP"]);
        Assert.Equal("a", PushAll(detokenizer, "aST"));
        Assert.Equal("STx", PushAll(detokenizer, "x"));
        Assert.Equal("", PushAll(detokenizer, "ST"));
        Assert.Equal("ST", detokenizer.Flush());
        Assert.False(detokenizer.Stopped);
    }

    [Fact]
    public void SpecialTokenText_CanBeAStopString()
    {
        var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecialTokens: false, ["<turn|>"]);
        Assert.Equal("Hi", PushAll(detokenizer, "Hi"));
        var result = detokenizer.Push(106);
        Assert.True(result.Stopped);
        Assert.Equal("", result.Delta);
    }

    [Fact]
    public void RandomStops_CutAtTheFirstMatch()
    {
        var random = new Random(5);
        var text = new RandomText(6);
        for (int trial = 0; trial < 400; trial++)
        {
            int[] ids = s_tokenizer.Encode(text.Next() + text.Next() + text.Next());
            string full = s_tokenizer.Decode(ids);
            string[] stops = [.. Enumerable.Range(0, random.Next(1, 4)).Select(_ => RandomStop(random, full))];
            var detokenizer = new StreamingDetokenizer(s_tokenizer, skipSpecialTokens: false, stops);
            var streamed = new StringBuilder();
            DetokenizerResult result = default;
            foreach (int id in ids)
            {
                result = detokenizer.Push(id);
                AssertWellFormed(result.Delta, ids);
                streamed.Append(result.Delta);
                if (result.Stopped)
                    break;
            }
            if (!result.Stopped)
                streamed.Append(detokenizer.Flush());

            var (start, matched) = FirstMatch(full, stops);
            Assert.Equal(matched is not null, detokenizer.Stopped);
            Assert.Equal(matched, detokenizer.MatchedStop);
            Assert.Equal(matched is null ? full : full[..start], streamed.ToString());
        }
    }

    [Fact]
    public void BadArguments_AreRejected()
    {
        Assert.Throws<ArgumentException>(() => new StreamingDetokenizer(s_tokenizer, false, [""]));
        Assert.Throws<ArgumentException>(() => new StreamingDetokenizer(s_tokenizer, false, ["\uDC00x"]));
        var detokenizer = new StreamingDetokenizer(s_tokenizer, false);
        Assert.Throws<ArgumentOutOfRangeException>(() => detokenizer.Push(262_144));
    }

    private static string PushAll(StreamingDetokenizer detokenizer, string text) =>
        string.Concat(s_tokenizer.Encode(text).Select(id => detokenizer.Push(id).Delta));

    /// <summary>A substring of the text (so it matches), its prefix plus noise, or noise.</summary>
    private static string RandomStop(Random random, string full)
    {
        if (full.Length < 2 || random.Next(4) == 0)
            return "\u0001never";
        int start = random.Next(full.Length - 1);
        if (char.IsLowSurrogate(full[start]))
            start--;
        int length = Math.Min(full.Length - start, random.Next(1, 12));
        if (char.IsHighSurrogate(full[start + length - 1]))
            length = length < full.Length - start ? length + 1 : length - 1;
        string stop = length > 0 ? full.Substring(start, length) : full[start..(start + 1)];
        return random.Next(3) == 0 ? stop + "\u0002" : stop;
    }

    /// <summary>The reference rule: the match that ends first, then the longest.</summary>
    private static (int Start, string? Stop) FirstMatch(string text, string[] stops)
    {
        (int End, int Start, string? Stop) best = (int.MaxValue, 0, null);
        foreach (string stop in stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (at + stop.Length < best.End || (at + stop.Length == best.End && at < best.Start)))
                best = (at + stop.Length, at, stop);
        }
        return (best.Start, best.Stop);
    }

    private static void AssertWellFormed(string delta, int[] ids)
    {
        for (int i = 0; i < delta.Length; i++)
        {
            if (char.IsHighSurrogate(delta[i]) && i + 1 < delta.Length && char.IsLowSurrogate(delta[i + 1]))
                i++;
            else
                Assert.False(char.IsSurrogate(delta[i]), $"delta {ConformanceTests.Escape(delta)} splits a surrogate pair: [{string.Join(",", ids)}]");
        }
    }
}
