using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Parsing;
using GemmaTokenizer = Pipeline.Tokenizer.Tokenizer;

namespace Pipeline.Tokenizer.Tests.Parsing;

public class Gemma4OutputParserTests
{
    private const string Q = "<|\"|>";

    private static readonly string[] Samples =
    [
        "Plain answer with <b>html</b> and a lone < sign and <|channel without close.",
        "<|channel>thought\nLet me think: 2+2=4 < 5.\n<channel|>The answer is **4**.",
        "<|channel>thought\n<channel|>Empty thought, then text.<turn|>",
        $"<|channel>thought\nNeed weather.<channel|><|tool_call>call:get_weather{{city:{Q}Paris{Q},days:3}}<tool_call|><|tool_response>",
        $"<|tool_call>call:a{{x:1}}<tool_call|><|tool_call>call:b{{y:{Q}two{Q}}}<tool_call|>",
        $"<|tool_call>call:create_event{{title:{Q}Launch <tool_call|> party{Q},attendees:[{{email:{Q}a@x.io{Q},optional:false}},{{email:{Q}b@x.io{Q}}}],location:{{lat:48.85,lon:-2.35e0,name:{Q}Café ☕ 😀{Q}}},notes:None,ok:true}}<tool_call|>done",
        $"Text <|tool_call>call:{{x:1}}<tool_call|> more <|tool_call>no call here<tool_call|> <|tool_call>call:f{{x:}}<tool_call|> end",
        $"<|tool_call>call:f{{a:{Q}unterminated",
        "日本語のテキスト 😀 <|channel>thought\n考え中…<channel|>答え <eos>",
    ];

    private static List<OutputEvent> Normalize(IEnumerable<OutputEvent> events)
    {
        var merged = new List<OutputEvent>();
        foreach (var e in events)
        {
            if (merged.Count > 0 && merged[^1] is ContentDelta a && e is ContentDelta b)
                merged[^1] = new ContentDelta(a.Text + b.Text);
            else if (merged.Count > 0 && merged[^1] is ReasoningDelta c && e is ReasoningDelta d)
                merged[^1] = new ReasoningDelta(c.Text + d.Text);
            else if (e is not ContentDelta { Text.Length: 0 } and not ReasoningDelta { Text.Length: 0 })
                merged.Add(e);
        }
        return merged;
    }

    private static List<OutputEvent> RunChunks(IEnumerable<string> chunks)
    {
        var parser = new Gemma4OutputParser();
        var events = new List<OutputEvent>();
        foreach (var chunk in chunks)
            events.AddRange(parser.Push(chunk));
        events.AddRange(parser.Finish());
        return Normalize(events);
    }

    [Fact]
    public void SplitsThinkingContentAndToolCalls()
    {
        var events = RunChunks([Samples[3]]);
        Assert.Equal(2, events.Count);
        Assert.Equal(new ReasoningDelta("Need weather."), events[0]);
        var call = Assert.IsType<ToolCall>(events[1]);
        Assert.Equal(ToolCallStatus.Ok, call.Status);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("""{"city":"Paris","days":3}""", call.ArgumentsJson);
        Assert.Equal($"call:get_weather{{city:{Q}Paris{Q},days:3}}", call.Raw);

        var parsed = Gemma4OutputParser.Parse(Samples[1]);
        Assert.Equal("Let me think: 2+2=4 < 5.\n", parsed.Reasoning);
        Assert.Equal("The answer is **4**.", parsed.Content);
        Assert.Empty(parsed.ToolCalls);
    }

    [Fact]
    public void NestedArgumentsBecomeJson()
    {
        var call = Gemma4OutputParser.Parse(Samples[5]).ToolCalls.Single();
        Assert.Equal(ToolCallStatus.Ok, call.Status);
        Assert.Equal("create_event", call.Name);
        var args = JsonNode.Parse(call.ArgumentsJson!)!.AsObject();
        Assert.Equal("Launch <tool_call|> party", (string)args["title"]!);
        Assert.Equal("b@x.io", (string)args["attendees"]![1]!["email"]!);
        Assert.False((bool)args["attendees"]![0]!["optional"]!);
        Assert.Equal(48.85, (double)args["location"]!["lat"]!);
        Assert.Equal(-2.35, (double)args["location"]!["lon"]!);
        Assert.Equal("Café ☕ 😀", (string)args["location"]!["name"]!);
        Assert.Null(args["notes"]);
        Assert.True(args.ContainsKey("notes"));
        Assert.True((bool)args["ok"]!);
        Assert.Contains("Café ☕ 😀", call.ArgumentsJson);
        Assert.Equal("done", Gemma4OutputParser.Parse(Samples[5]).Content);
    }

    [Theory]
    [InlineData("call:{x:1}", ToolCallStatus.MissingName, null)]
    [InlineData("no call here", ToolCallStatus.Invalid, null)]
    [InlineData("call:two words{x:1}", ToolCallStatus.Invalid, null)]
    [InlineData("call:f{x:}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:1", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:1}}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:maybe}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:01}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:[1,2}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{:1}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:<|\"|>open}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{x:inf}", ToolCallStatus.ParseError, "f")]
    [InlineData("call:f{}", ToolCallStatus.Ok, "f")]
    [InlineData(" call:f { a : [ 1 , -2.5e3 , true , null ] , <|\"|>quoted key<|\"|> : { } } ", ToolCallStatus.Ok, "f")]
    public void MalformedCallsGetAStatusNotAnException(string raw, ToolCallStatus status, string? name)
    {
        var call = ToolCallSyntax.Parse(raw);
        Assert.Equal(status, call.Status);
        Assert.Equal(name, call.Name);
        Assert.Equal(raw, call.Raw);
        Assert.Equal(status == ToolCallStatus.Ok, call.ArgumentsJson is not null);
    }

    [Fact]
    public void ArgumentStringsAreEscapedAsJson()
    {
        var call = ToolCallSyntax.Parse($"call:f{{s:{Q}quote \" back\\slash\nnew\u0001{Q}}}");
        Assert.Equal("{\"s\":\"quote \\\" back\\\\slash\\nnew\\u0001\"}", call.ArgumentsJson);
        Assert.Equal("quote \" back\\slash\nnew\u0001", (string)JsonNode.Parse(call.ArgumentsJson!)!["s"]!);
    }

    [Fact]
    public void QuotedKeysAndWhitespaceAreAccepted()
    {
        var call = ToolCallSyntax.Parse(" call:f { a : [ 1 , -2.5e3 , true , null ] , <|\"|>quoted key<|\"|> : { } } ");
        Assert.Equal("""{"a":[1,-2.5e3,true,null],"quoted key":{}}""", call.ArgumentsJson);
    }

    [Fact]
    public void MalformedAndUnclosedCallsAreReportedInOrder()
    {
        var events = RunChunks([Samples[6]]);
        Assert.Equal(
            [
                "Content:Text ", "Call:MissingName", "Content: more ", "Call:Invalid", "Content: ", "Call:ParseError", "Content: end",
            ],
            events.Select(Describe));
        var unclosed = Assert.IsType<ToolCall>(RunChunks([Samples[7]]).Single());
        Assert.Equal(ToolCallStatus.Invalid, unclosed.Status);
        Assert.Equal($"call:f{{a:{Q}unterminated", unclosed.Raw);

        static string Describe(OutputEvent e) => e switch
        {
            ContentDelta c => "Content:" + c.Text,
            ReasoningDelta r => "Reasoning:" + r.Text,
            ToolCall t => "Call:" + t.Status,
            _ => "?",
        };
    }

    [Fact]
    public void StopAndStrayMarkersAreDropped()
    {
        Assert.Equal("Empty thought, then text.", Gemma4OutputParser.Parse(Samples[2]).Content);
        Assert.Equal("", Gemma4OutputParser.Parse(Samples[2]).Reasoning);
        Assert.Equal("ab", Gemma4OutputParser.Parse("a<channel|><tool_call|>b<turn|>").Content);
        var parsed = Gemma4OutputParser.Parse(Samples[8]);
        Assert.Equal("日本語のテキスト 😀 答え ", parsed.Content);
        Assert.Equal("考え中…", parsed.Reasoning);
    }

    [Theory]
    [MemberData(nameof(SampleIndexes))]
    public void StreamingSplitAtEveryPositionGivesTheSameEvents(int sample)
    {
        string text = Samples[sample];
        var whole = RunChunks([text]);
        for (int i = 0; i <= text.Length; i++)
        {
            if (i > 0 && i < text.Length && char.IsLowSurrogate(text[i]))
                continue; // the detokenizer never splits a character
            Assert.Equal(whole, RunChunks([text[..i], text[i..]]));
        }
        Assert.Equal(whole, RunChunks(Chars(text)));
    }

    [Theory]
    [MemberData(nameof(SampleIndexes))]
    public void RandomChunkingGivesTheSameEvents(int sample)
    {
        string text = Samples[sample];
        var whole = RunChunks([text]);
        var random = new Random(1234 + sample);
        for (int trial = 0; trial < 200; trial++)
        {
            var chunks = new List<string>();
            int pos = 0;
            while (pos < text.Length)
            {
                int length = Math.Min(random.Next(0, 8), text.Length - pos);
                if (pos + length < text.Length && length > 0 && char.IsLowSurrogate(text[pos + length]))
                    length++;
                chunks.Add(text.Substring(pos, length));
                pos += length;
            }
            Assert.Equal(whole, RunChunks(chunks));
        }
    }

    public static TheoryData<int> SampleIndexes() => [.. Enumerable.Range(0, Samples.Length)];

    private static IEnumerable<string> Chars(string text)
    {
        for (int i = 0; i < text.Length; i++)
            yield return char.IsHighSurrogate(text[i]) ? text.Substring(i++, 2) : text[i].ToString();
    }

    [Fact]
    public void WorksOnStreamingDetokenizerOutputWithSpecialsKept()
    {
        // Every marker is a single special token; the detokenizer (skip_special_tokens=false) spells them out.
        var tokenizer = GemmaTokenizer.LoadGemma4();
        string text = Samples[3] + " and " + Samples[5] + " " + Samples[8] + " \u0001\U0001F9EA";
        int[] ids = tokenizer.Encode(text);
        Assert.Contains(tokenizer.TokenToId("<|tool_call>")!.Value, ids);
        Assert.Contains(tokenizer.TokenToId("<|\"|>")!.Value, ids);
        var detokenizer = new StreamingDetokenizer(tokenizer, skipSpecialTokens: false);
        var parser = new Gemma4OutputParser();
        var events = new List<OutputEvent>();
        var decoded = new System.Text.StringBuilder();
        foreach (int id in ids)
        {
            string delta = detokenizer.Push(id).Delta;
            decoded.Append(delta);
            events.AddRange(parser.Push(delta));
        }
        string rest = detokenizer.Flush();
        decoded.Append(rest);
        events.AddRange(parser.Push(rest));
        events.AddRange(parser.Finish());
        Assert.Equal(text, decoded.ToString());
        Assert.Equal(RunChunks([text]), Normalize(events));
    }

    [Fact]
    public void StopTokensComeFromGenerationConfig()
    {
        Assert.Equal([1, 50, 106], StopTokens.Gemma4.Ids.Order());
        var tokenizer = GemmaTokenizer.LoadGemma4();
        Assert.True(StopTokens.Gemma4.IsStop(tokenizer.TokenToId("<eos>")!.Value));
        Assert.True(StopTokens.Gemma4.IsStop(tokenizer.TokenToId("<turn|>")!.Value));
        Assert.True(StopTokens.Gemma4.IsStop(tokenizer.TokenToId("<|tool_response>")!.Value));
        Assert.False(StopTokens.Gemma4.IsStop(tokenizer.TokenToId("<|tool_call>")!.Value));
        Assert.True(StopTokens.FromGenerationConfig("""{"eos_token_id": 7}""").IsStop(7));
        var bad = Assert.Throws<InvalidDataException>(() => StopTokens.FromGenerationConfig("""{"eos_token_id": [1, "x"]}""", "cfg.json"));
        Assert.Contains("cfg.json: eos_token_id[1]", bad.Message);
        Assert.Throws<InvalidDataException>(() => StopTokens.FromGenerationConfig("""{"bos_token_id": 2}"""));
        Assert.Throws<InvalidDataException>(() => StopTokens.FromGenerationConfig("{not json"));
    }

    [Fact]
    public void PushAfterFinishIsRejected()
    {
        var parser = new Gemma4OutputParser();
        parser.Finish();
        Assert.Throws<InvalidOperationException>(() => parser.Push("x"));
        Assert.Empty(parser.Finish());
    }
}
