namespace Pipeline.Tokenizer.Tests;

/// <summary>Encode and decode agree exactly with HF's Rust tokenizers on seeded random input.</summary>
public class DifferentialTests(HfOracle oracle) : IClassFixture<HfOracle>
{
    // Fixed so failures reproduce; set PIPELINE_TOKENIZER_SEED to explore other inputs.
    private static readonly int s_seed = int.TryParse(Environment.GetEnvironmentVariable("PIPELINE_TOKENIZER_SEED"), out int s) ? s : 20261127;

    private static readonly Tokenizer s_tokenizer = Tokenizer.LoadGemma4();

    [Fact]
    public void OracleIsTheExpectedLibrary()
    {
        Assert.Equal([2, 9259, 1902], oracle.EncodeWithSpecialTokens("Hello world"));
    }

    [Fact]
    public void RandomStrings_EncodeAndDecodeAgreeWithHf()
    {
        var random = new RandomText(s_seed);
        var failures = new List<string>();
        const int count = 5000;
        for (int i = 0; i < count && failures.Count < 10; i++)
        {
            string text = random.Next();
            int[] expected = oracle.EncodeWithSpecialTokens(text);
            int[] withBos = s_tokenizer.Encode(text, addSpecialTokens: true);
            int[] plain = s_tokenizer.Encode(text);
            if (!expected.SequenceEqual(withBos) || !expected.Skip(1).SequenceEqual(plain))
            {
                failures.Add($"#{i} encode {ConformanceTests.Escape(text)}: hf [{string.Join(",", expected)}] ours [{string.Join(",", withBos)}]");
                continue;
            }
            string hfText = oracle.DecodeSkippingSpecialTokens(expected);
            string ours = s_tokenizer.Decode(expected, skipSpecialTokens: true);
            if (hfText != ours)
                failures.Add($"#{i} decode of {ConformanceTests.Escape(text)}: hf {ConformanceTests.Escape(hfText)} ours {ConformanceTests.Escape(ours)}");
        }
        Assert.True(failures.Count == 0, $"seed {s_seed}:\n" + string.Join("\n", failures));
    }

    [Fact]
    public void RandomIdSequences_DecodeAgreesWithHf()
    {
        var random = new Random(s_seed);
        var failures = new List<string>();
        for (int i = 0; i < 1000 && failures.Count < 10; i++)
        {
            int[] ids = RandomIds(random, s_tokenizer, random.Next(1, 40));
            string expected = oracle.DecodeSkippingSpecialTokens(ids);
            string actual = s_tokenizer.Decode(ids, skipSpecialTokens: true);
            if (expected != actual)
                failures.Add($"#{i} [{string.Join(",", ids)}]: hf {ConformanceTests.Escape(expected)} ours {ConformanceTests.Escape(actual)}");
        }
        Assert.True(failures.Count == 0, $"seed {s_seed}:\n" + string.Join("\n", failures));
    }

    [Fact]
    public void LongInputs_AgreeWithHf()
    {
        var random = new RandomText(s_seed);
        string letters = string.Concat(Enumerable.Range(0, 100_000).Select(_ => (char)random.Random.Next('a', 'z' + 1)));
        string[] inputs =
        [
            new string('a', 100_000),
            letters,
            random.RandomCodePoints(100_000),
            string.Concat(Enumerable.Range(0, 2_000).Select(_ => random.Next())),
            new string(' ', 50_000) + "x" + new string('\n', 50_000),
        ];
        foreach (string text in inputs)
            Assert.Equal(oracle.EncodeWithSpecialTokens(text), s_tokenizer.Encode(text, addSpecialTokens: true));
    }

    /// <summary>Ids biased towards the interesting ones: byte tokens, special and added tokens, whitespace runs.</summary>
    internal static int[] RandomIds(Random random, Tokenizer tokenizer, int length)
    {
        var ids = new int[length];
        for (int k = 0; k < length; k++)
        {
            ids[k] = random.Next(6) switch
            {
                0 or 1 => 238 + random.Next(256),          // <0x00>..<0xFF>
                2 => random.Next(0, 238),                  // specials, unused, whitespace runs, HTML tags
                3 => 238 + (random.Next(2) == 0 ? 0xC0 + random.Next(0x40) : 0x80 + random.Next(0x40)), // leads and continuations
                _ => random.Next(tokenizer.VocabSize),
            };
        }
        return ids;
    }
}
