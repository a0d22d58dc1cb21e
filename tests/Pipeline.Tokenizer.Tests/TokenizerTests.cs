using System.IO.Compression;

namespace Pipeline.Tokenizer.Tests;

public class TokenizerTests
{
    private static readonly Tokenizer s_gemma = Tokenizer.LoadGemma4();

    [Fact]
    public void Gemma4_Metadata()
    {
        Assert.Equal(262_144, s_gemma.VocabSize);
        Assert.Equal(2, s_gemma.BosId);
        Assert.True(s_gemma.IsSpecial(2));
        Assert.True(s_gemma.IsSpecial(106));
        Assert.False(s_gemma.IsSpecial(5));   // [multimodal]: added but not special
        Assert.False(s_gemma.IsSpecial(107)); // "\n"
        Assert.False(s_gemma.IsSpecial(-1));
        Assert.False(s_gemma.IsSpecial(262_144));
        Assert.Equal(105, s_gemma.TokenToId("<|turn>"));
        Assert.Equal(238, s_gemma.TokenToId("<0x00>"));
        Assert.Null(s_gemma.TokenToId("definitely not a token"));
        Assert.Equal("<turn|>", s_gemma.IdToToken(106));
        Assert.Equal("▁Hello", s_gemma.IdToToken(26352));
        Assert.Equal(24, Enumerable.Range(0, s_gemma.VocabSize).Count(s_gemma.IsSpecial));
    }

    [Fact]
    public void LoneSurrogates_EncodeAsReplacementCharacter()
    {
        int[] expected = [236746, 238479, 236763]; // "a", "�", "b" (dev README)
        Assert.Equal(expected, s_gemma.Encode("a\uD800b"));
        Assert.Equal(expected, s_gemma.Encode("a\uDC00b"));
        Assert.Equal(s_gemma.Encode("a\uFFFD"), s_gemma.Encode("a\uD83D"));          // high surrogate at the end
        Assert.Equal(s_gemma.Encode("\uFFFD😀"), s_gemma.Encode("\uDE00😀"));      // lone low before a pair
        Assert.Equal(s_gemma.Encode("😀"), s_gemma.Encode("\uD83D\uDE00"));
    }

    /// <summary>100k-char inputs with no word boundary must not take quadratic time (or hang).</summary>
    [Fact]
    public async Task LongInputs_FinishAndRoundTrip()
    {
        var random = new RandomText(99);
        string[] inputs =
        [
            new string('a', 100_000),
            string.Concat(Enumerable.Range(0, 100_000).Select(_ => (char)random.Random.Next('a', 'z' + 1))),
            random.RandomCodePoints(100_000),
            new string('▁', 100_000),
        ];
        var work = Task.Run(() => inputs.Select(text => s_gemma.Decode(s_gemma.Encode(text))).ToArray());
        // Fails (TimeoutException) rather than hangs when encoding is pathologically slow.
        string[] decoded = await work.WaitAsync(TimeSpan.FromMinutes(2));
        for (int i = 0; i < inputs.Length; i++)
            Assert.Equal(inputs[i].Replace('▁', ' '), decoded[i]);
    }

    [Fact]
    public void EncodeIntoList_Appends()
    {
        var output = new List<int> { 42 };
        s_gemma.Encode("Hello world", output, addSpecialTokens: true);
        Assert.Equal([42, 2, 9259, 1902], output);
    }

    [Fact]
    public void Decode_UnknownId_ThrowsNamingIdAndPosition()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => s_gemma.Decode([9259, 262_144]));
        Assert.Contains("262144", error.Message);
        Assert.Contains("index 1", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => s_gemma.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => s_gemma.IdToToken(300_000));
    }

    [Fact]
    public void Decode_SkipSpecialJoinsByteRuns()
    {
        int[] ids = [238 + 0xE4, 2, 238 + 0xB8, 238 + 0xAD]; // <0xE4> <bos> <0xB8> <0xAD> (dev README)
        Assert.Equal("中", s_gemma.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("\uFFFD<bos>\uFFFD\uFFFD", s_gemma.Decode(ids));
        Assert.Equal("\uFFFD\uFFFD\uFFFD\uFFFD", s_gemma.Decode([238 + 0xE4, 238 + 0xB8, 238 + 0xAD, 238 + 0x80]));
    }

    [Fact]
    public void Load_FromFolderWithPlainJson()
    {
        string dir = Directory.CreateTempSubdirectory("pipeline-tokenizer-").FullName;
        try
        {
            using (var gz = new GZipStream(File.OpenRead(Fixtures.ShippedTokenizerGz), CompressionMode.Decompress))
            using (var file = File.Create(Path.Combine(dir, "tokenizer.json")))
                gz.CopyTo(file);
            const string text = "<|turn>user\nGrüße, 世界! 👋<turn|>\n";
            Assert.Equal(s_gemma.Encode(text), Tokenizer.Load(dir).Encode(text));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Load_MissingFileOrFolder_NamesThePath()
    {
        var missing = Assert.Throws<FileNotFoundException>(() => Tokenizer.Load("/nonexistent/tokenizer.json"));
        Assert.Contains("/nonexistent/tokenizer.json", missing.Message);
        string dir = Directory.CreateTempSubdirectory("pipeline-tokenizer-").FullName;
        try
        {
            var empty = Assert.Throws<FileNotFoundException>(() => Tokenizer.Load(dir));
            Assert.Contains(dir, empty.Message);
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    [Fact]
    public void Load_MalformedJson_NamesSourceAndLine()
    {
        var error = Assert.Throws<InvalidDataException>(() => LoadJson("{\n\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}}"));
        Assert.Contains("test.json", error.Message);
        Assert.Contains("line 2", error.Message);
    }

    [Theory]
    [InlineData("\"model\": {\"type\": \"Unigram\", \"vocab\": []}", "model.type")]
    [InlineData("\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}", "model.dropout")]
    [InlineData("\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}", "normalizer.type")]
    [InlineData("\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"x\"}]}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}", "normalizer.normalizers[0].pattern")]
    [InlineData("\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}", "pre_tokenizer")]
    [InlineData("\"decoder\": {\"type\": \"Strip\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}", "decoder step 0")]
    [InlineData("\"added_tokens\": [{\"id\": 0, \"content\": \"a\", \"lstrip\": true}], \"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}", "added_tokens[0].lstrip")]
    public void Load_UnsupportedComponent_NamesTheField(string body, string field)
    {
        var error = Assert.Throws<NotSupportedException>(() => LoadJson("{" + body + "}"));
        Assert.Contains(field, error.Message);
        Assert.Contains("test.json", error.Message);
    }

    [Theory]
    [InlineData("{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}", "'ab'")]
    [InlineData("{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"z\"]]}}", "merges[0]")]
    [InlineData("{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "id 0")]
    [InlineData("{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "<unk>")]
    public void Load_InconsistentVocabulary_IsRejected(string json, string detail)
    {
        var error = Assert.Throws<InvalidDataException>(() => LoadJson(json));
        Assert.Contains(detail, error.Message);
    }

    /// <summary>
    /// A hand-made file for what Gemma's does not exercise: old "a b" merges, no byte fallback,
    /// fused and unfused unknown tokens, merges listed before the vocabulary, a suffix template,
    /// a normalizer wrapped in a Sequence.
    /// </summary>
    [Theory]
    [InlineData(true, new[] { 5, 3, 2, 0, 2, 4, 6 }, "ab <unk> ba")]
    [InlineData(false, new[] { 5, 3, 2, 0, 0, 0, 2, 4, 6 }, "ab <unk><unk><unk> ba")]
    public void SmallTokenizer_UnknownCharsAndTemplate(bool fuseUnk, int[] expected, string decoded)
    {
        string json = """
            {
              "added_tokens": [{"id": 5, "content": "<s>", "special": true}, {"id": 6, "content": "</s>", "special": true}],
              "normalizer": {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
              "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [5], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [6], "tokens": ["</s>"]}}},
              "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "Fuse"}]},
              "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": FUSE_UNK, "byte_fallback": false,
                "merges": ["a b", "b a"],
                "vocab": {"<unk>": 0, "a": 1, "▁": 2, "ab": 3, "b": 7, "ba": 4, "<s>": 5, "</s>": 6}}
            }
            """.Replace("FUSE_UNK", fuseUnk ? "true" : "false");
        var tokenizer = LoadJson(json);
        int[] ids = tokenizer.Encode("ab xyz ba", addSpecialTokens: true);
        Assert.Equal(expected, ids);
        Assert.Equal(5, tokenizer.BosId);
        Assert.Equal(decoded, tokenizer.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("<s>" + decoded + "</s>", tokenizer.Decode(ids));
    }

    /// <summary>A fresh tokenizer (loaded from a folder holding tokenizer.json.gz) with threads racing to fill its word cache.</summary>
    [Fact]
    public void ConcurrentEncoding_FromGzFolder_MatchesVectors()
    {
        var lines = Fixtures.ReadJsonLines(Path.Combine(Fixtures.TokenizerDev, "encode.jsonl"))
            .Select(l => (Text: l.Value.GetProperty("text").GetString()!, Ids: Fixtures.Ids(l.Value.GetProperty("ids")),
                Special: l.Value.GetProperty("add_special_tokens").GetBoolean()))
            .ToArray();
        string dir = Directory.CreateTempSubdirectory("pipeline-tokenizer-").FullName;
        try
        {
            File.Copy(Fixtures.ShippedTokenizerGz, Path.Combine(dir, "tokenizer.json.gz"));
            var fresh = Tokenizer.Load(dir);
            int mismatches = 0;
            Parallel.For(0, lines.Length * 2, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                var (text, ids, special) = lines[i % lines.Length];
                if (!fresh.Encode(text, special).SequenceEqual(ids))
                    Interlocked.Increment(ref mismatches);
            });
            Assert.Equal(0, mismatches);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void EmbeddedData_IsShippedWithNotice()
    {
        Assert.Contains("Gemma Terms of Use", GemmaTokenizerData.ReadNotice());
        Assert.Contains("<|turn>", GemmaTokenizerData.ReadChatTemplate());
        Assert.Contains("\"eos_token_id\"", GemmaTokenizerData.ReadGenerationConfigJson());
        Assert.Contains("\"bos_token\"", GemmaTokenizerData.ReadTokenizerConfigJson());
    }

    private static Tokenizer LoadJson(string json) =>
        Tokenizer.Load(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json)), "test.json");
}
