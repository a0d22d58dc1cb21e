namespace Pipeline.Tokenizer.Tests;

/// <summary>The dev vectors from HF's Rust tokenizers and llama.cpp, reproduced line by line.</summary>
public class ConformanceTests
{
    private static readonly Tokenizer s_tokenizer = Tokenizer.LoadGemma4();

    [Fact]
    public void EncodeJsonl_EveryLineMatches()
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var (line, value) in Fixtures.ReadJsonLines(Path.Combine(Fixtures.TokenizerDev, "encode.jsonl")))
        {
            count++;
            string text = value.GetProperty("text").GetString()!;
            bool addSpecial = value.GetProperty("add_special_tokens").GetBoolean();
            int[] expected = Fixtures.Ids(value.GetProperty("ids"));
            int[] actual = s_tokenizer.Encode(text, addSpecial);
            if (!expected.SequenceEqual(actual))
                failures.Add($"line {line}: expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]");
        }
        Assert.Equal(1509, count);
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void DecodeJsonl_EveryLineMatches()
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var (line, value) in Fixtures.ReadJsonLines(Path.Combine(Fixtures.TokenizerDev, "decode.jsonl")))
        {
            count++;
            int[] ids = Fixtures.Ids(value.GetProperty("ids"));
            bool skip = value.GetProperty("skip_special_tokens").GetBoolean();
            string expected = value.GetProperty("text").GetString()!;
            string actual = s_tokenizer.Decode(ids, skip);
            if (expected != actual)
                failures.Add($"line {line}: expected {Escape(expected)} got {Escape(actual)}");
        }
        Assert.Equal(638, count);
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void LlamaCppVectors_EveryLineMatches()
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var (line, value) in Fixtures.ReadJsonLines(Path.Combine(Fixtures.TokenizerDev, "llamacpp-vectors", "vectors.jsonl")))
        {
            count++;
            string text = value.GetProperty("text").GetString()!;
            int[] expected = Fixtures.Ids(value.GetProperty("ids"));
            int[] actual = s_tokenizer.Encode(text);
            if (!expected.SequenceEqual(actual))
                failures.Add($"line {line}: expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]");
        }
        Assert.Equal(46, count);
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures));
    }

    internal static string Escape(string s) =>
        "\"" + string.Concat(s.Select(c => c < 0x20 || c > 0x7E ? $"\\u{(int)c:X4}" : c.ToString())) + "\"";
}
