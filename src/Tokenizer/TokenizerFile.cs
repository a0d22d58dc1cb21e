using System.IO.Compression;
using System.Runtime.CompilerServices;
using System.Text.Json;

namespace Pipeline.Tokenizer;

/// <summary>
/// The parts of a Hugging Face tokenizer.json that this tokenizer implements, read with
/// Utf8JsonReader (the 262k vocab and 515k merges would be slow as a DOM). Anything outside the
/// supported subset is rejected with the JSON path and value, never silently ignored.
/// </summary>
internal sealed class TokenizerFile
{
    public required string Source { get; init; }
    public required string[] Vocab { get; init; }      // [id] -> token; null where no token has the id
    public required VocabIndex VocabIds { get; init; } // model vocab only
    public required MergeBuilder Merges { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public string? UnkToken { get; init; }
    public bool FuseUnk { get; init; }
    public bool ByteFallback { get; init; }
    public (string Pattern, string Content)? NormalizerReplace { get; init; }
    public (string Pattern, string Content)? DecoderReplace { get; init; }
    public bool DecoderByteFallback { get; init; }
    public int[] PrefixIds { get; init; } = [];
    public int[] SuffixIds { get; init; } = [];

    public readonly record struct AddedToken(int Id, string Content, bool Special);

    /// <summary>Reads a tokenizer.json, a gzipped one (by content, not name), or a folder holding either.</summary>
    public static TokenizerFile Read(string path)
    {
        string file = path;
        if (Directory.Exists(path))
        {
            file = Path.Combine(path, "tokenizer.json");
            if (!File.Exists(file))
                file = Path.Combine(path, "tokenizer.json.gz");
            if (!File.Exists(file))
                throw new FileNotFoundException($"Folder '{path}' holds neither tokenizer.json nor tokenizer.json.gz.", file);
        }
        else if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        }
        using var stream = File.OpenRead(file);
        return Read(stream, file);
    }

    public static TokenizerFile Read(Stream stream, string source)
    {
        byte[] json = ReadAllMaybeGzip(stream, out int length);
        try
        {
            return Parse(json.AsMemory(0, length), source);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: malformed JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine}: {e.Message}", e);
        }
    }

    private static byte[] ReadAllMaybeGzip(Stream stream, out int length)
    {
        var raw = new MemoryStream();
        stream.CopyTo(raw);
        byte[] bytes = raw.GetBuffer();
        int rawLength = (int)raw.Length;
        if (rawLength >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B)
        {
            using var gz = new GZipStream(new MemoryStream(bytes, 0, rawLength), CompressionMode.Decompress);
            var unpacked = new MemoryStream(rawLength * 4);
            gz.CopyTo(unpacked);
            length = (int)unpacked.Length;
            return unpacked.GetBuffer();
        }
        length = rawLength;
        return bytes;
    }

    private static TokenizerFile Parse(ReadOnlyMemory<byte> json, string source)
    {
        var reader = new Utf8JsonReader(json.Span, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        Expect(ref reader, JsonTokenType.StartObject, source, "$");

        List<AddedToken> added = [];
        (string, string)? normalizer = null;
        JsonElement? preTokenizer = null, postProcessor = null, decoder = null;
        ModelSection? model = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string name = reader.GetString()!;
            reader.Read();
            switch (name)
            {
                case "version":
                    reader.Skip();
                    break;
                case "truncation":
                case "padding":
                    if (reader.TokenType != JsonTokenType.Null)
                        throw Unsupported(source, name, "only null is supported");
                    break;
                case "added_tokens":
                    added = ReadAddedTokens(ref reader, source);
                    break;
                case "normalizer":
                    normalizer = ReadNormalizer(JsonElementOrNull(ref reader), source);
                    break;
                case "pre_tokenizer":
                    preTokenizer = JsonElementOrNull(ref reader);
                    break;
                case "post_processor":
                    postProcessor = JsonElementOrNull(ref reader);
                    break;
                case "decoder":
                    decoder = JsonElementOrNull(ref reader);
                    break;
                case "model":
                    model = ReadModel(ref reader, json.Span, source);
                    break;
                default:
                    throw Unsupported(source, name, "unknown top-level field");
            }
        }
        if (model is null)
            throw new InvalidDataException($"{source}: no 'model' section.");

        CheckPreTokenizerIsNoOp(preTokenizer, normalizer, source);
        var (decoderReplace, decoderByteFallback) = ReadDecoder(decoder, source);
        var (prefix, suffix) = ReadPostProcessor(postProcessor, source);

        return new TokenizerFile
        {
            Source = source,
            Vocab = model.Vocab,
            VocabIds = model.VocabIds,
            Merges = model.Merges,
            AddedTokens = added,
            UnkToken = model.UnkToken,
            FuseUnk = model.FuseUnk,
            ByteFallback = model.ByteFallback,
            NormalizerReplace = normalizer,
            DecoderReplace = decoderReplace,
            DecoderByteFallback = decoderByteFallback,
            PrefixIds = prefix,
            SuffixIds = suffix,
        };
    }

    private sealed class ModelSection
    {
        public required string[] Vocab;
        public required VocabIndex VocabIds;
        public required MergeBuilder Merges;
        public string? UnkToken;
        public bool FuseUnk;
        public bool ByteFallback;
    }

    private static ModelSection ReadModel(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, string source)
    {
        Expect(ref reader, JsonTokenType.StartObject, source, "model");
        string[]? vocab = null;
        VocabIndex? vocabIds = null;
        MergeBuilder? merges = null;
        int mergesOffset = -1; // when merges come before vocab: parsed once vocab is known
        string? unk = null;
        bool fuseUnk = false, byteFallback = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string name = reader.GetString()!;
            reader.Read();
            switch (name)
            {
                case "type":
                    if (reader.GetString() != "BPE")
                        throw Unsupported(source, "model.type", $"'{reader.GetString()}' (only BPE is implemented)");
                    break;
                case "dropout":
                    if (reader.TokenType != JsonTokenType.Null && reader.GetDouble() != 0)
                        throw Unsupported(source, "model.dropout", "BPE dropout is not implemented");
                    break;
                case "continuing_subword_prefix":
                case "end_of_word_suffix":
                    if (reader.TokenType != JsonTokenType.Null && reader.GetString()!.Length != 0)
                        throw Unsupported(source, "model." + name, $"'{reader.GetString()}'");
                    break;
                case "ignore_merges":
                    if (reader.GetBoolean())
                        throw Unsupported(source, "model.ignore_merges", "true");
                    break;
                case "unk_token":
                    unk = reader.TokenType == JsonTokenType.Null ? null : reader.GetString();
                    break;
                case "fuse_unk":
                    fuseUnk = reader.GetBoolean();
                    break;
                case "byte_fallback":
                    byteFallback = reader.GetBoolean();
                    break;
                case "vocab":
                    (vocab, vocabIds) = ReadVocab(ref reader, source);
                    break;
                case "merges":
                    if (reader.TokenType != JsonTokenType.StartArray)
                        throw new InvalidDataException($"{source}: model.merges is not an array.");
                    if (vocab is null || vocabIds is null)
                    {
                        mergesOffset = (int)reader.TokenStartIndex;
                        reader.Skip();
                    }
                    else
                    {
                        merges = new MergeBuilder(source, vocab, vocabIds);
                        ReadMerges(ref reader, merges, source);
                    }
                    break;
                default:
                    throw Unsupported(source, "model." + name, "unknown BPE field");
            }
        }
        if (vocab is null || vocabIds is null)
            throw new InvalidDataException($"{source}: model.vocab is missing.");
        if (merges is null && mergesOffset >= 0)
        {
            var deferred = new Utf8JsonReader(json[mergesOffset..]);
            deferred.Read();
            merges = new MergeBuilder(source, vocab, vocabIds);
            ReadMerges(ref deferred, merges, source);
        }
        if (merges is null)
            throw new InvalidDataException($"{source}: model.merges is missing.");
        return new ModelSection
        {
            Vocab = vocab,
            VocabIds = vocabIds,
            Merges = merges,
            UnkToken = unk,
            FuseUnk = fuseUnk,
            ByteFallback = byteFallback,
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per load: skip tier-0 JIT
    private static (string[] Vocab, VocabIndex Ids) ReadVocab(ref Utf8JsonReader reader, string source)
    {
        Expect(ref reader, JsonTokenType.StartObject, source, "model.vocab");
        var entries = new List<(string Token, int Id)>(300_000);
        int maxId = -1;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string token = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int id) || id < 0)
                throw new InvalidDataException($"{source}: model.vocab['{token}'] is not a non-negative integer id.");
            entries.Add((token, id));
            maxId = Math.Max(maxId, id);
        }
        var byId = new string[maxId + 1];
        foreach (var (token, id) in entries)
        {
            if (byId[id] is not null)
                throw new InvalidDataException($"{source}: model.vocab gives id {id} to both '{byId[id]}' and '{token}'.");
            byId[id] = token;
        }
        var index = new VocabIndex(byId, (token, first, second) =>
            throw new InvalidDataException($"{source}: model.vocab lists '{token}' twice (ids {first} and {second})."));
        return (byId, index);
    }

    private static List<AddedToken> ReadAddedTokens(ref Utf8JsonReader reader, string source)
    {
        using var doc = JsonDocument.ParseValue(ref reader);
        var list = new List<AddedToken>();
        int index = 0;
        foreach (var item in doc.RootElement.EnumerateArray())
        {
            string where = $"added_tokens[{index++}]";
            int id = item.GetProperty("id").GetInt32();
            if (id < 0)
                throw new InvalidDataException($"{source}: {where}.id is {id}.");
            string content = item.GetProperty("content").GetString()
                ?? throw new InvalidDataException($"{source}: {where}.content is null.");
            foreach (string flag in (ReadOnlySpan<string>)["single_word", "lstrip", "rstrip", "normalized"])
            {
                if (item.TryGetProperty(flag, out var value) && value.GetBoolean())
                    throw Unsupported(source, $"{where}.{flag}", $"true for '{content}' (only false is implemented)");
            }
            bool special = item.TryGetProperty("special", out var s) && s.GetBoolean();
            list.Add(new AddedToken(id, content, special));
        }
        return list;
    }

    private static JsonElement? JsonElementOrNull(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null)
            return null;
        using var doc = JsonDocument.ParseValue(ref reader);
        return doc.RootElement.Clone();
    }

    /// <summary>Null, one Replace, or a Sequence holding at most one Replace.</summary>
    private static (string Pattern, string Content)? ReadNormalizer(JsonElement? element, string source)
    {
        if (element is { } e && e.GetProperty("type").GetString() == "Sequence")
        {
            var steps = e.GetProperty("normalizers").EnumerateArray().ToList();
            if (steps.Count > 1)
                throw Unsupported(source, "normalizer", $"a Sequence of {steps.Count} steps (at most one Replace is implemented)");
            return steps.Count == 0 ? null : ReadReplace(steps[0], source, "normalizer.normalizers[0]");
        }
        return ReadReplace(element, source, "normalizer");
    }

    /// <summary>A Replace step with a plain string pattern (normalizer or decoder); null stays null.</summary>
    private static (string Pattern, string Content)? ReadReplace(JsonElement? element, string source, string where)
    {
        if (element is not { } e)
            return null;
        string type = e.GetProperty("type").GetString() ?? "";
        if (type != "Replace")
            throw Unsupported(source, where + ".type", $"'{type}' (only Replace with a string pattern is implemented)");
        if (!e.GetProperty("pattern").TryGetProperty("String", out var pattern))
            throw Unsupported(source, where + ".pattern", $"{e.GetProperty("pattern")} (only String patterns are implemented)");
        string p = pattern.GetString() ?? "";
        if (p.Length == 0)
            throw Unsupported(source, where + ".pattern", "empty string");
        return (p, e.GetProperty("content").GetString() ?? "");
    }

    /// <summary>
    /// Gemma's files split on " " after the normalizer has replaced every " ": a no-op, so it is
    /// accepted. Any pre-tokenizer that could split is not implemented.
    /// </summary>
    private static void CheckPreTokenizerIsNoOp(JsonElement? element, (string Pattern, string Content)? normalizer, string source)
    {
        if (element is not { } e)
            return;
        string type = e.GetProperty("type").GetString() ?? "";
        if (type == "Split"
            && e.GetProperty("pattern").TryGetProperty("String", out var pattern)
            && pattern.GetString() is { Length: 1 } p
            && normalizer is { } n && n.Pattern == p && !n.Content.Contains(p, StringComparison.Ordinal)
            && !(e.TryGetProperty("invert", out var invert) && invert.GetBoolean()))
            return;
        throw Unsupported(source, "pre_tokenizer", $"{e} (only a Split on a character the normalizer removes is implemented)");
    }

    private static ((string, string)? Replace, bool ByteFallback) ReadDecoder(JsonElement? element, string source)
    {
        if (element is not { } e)
            throw Unsupported(source, "decoder", "null (decoding without a decoder joins with spaces; not implemented)");
        var steps = new List<JsonElement>();
        if (e.GetProperty("type").GetString() == "Sequence")
            steps.AddRange(e.GetProperty("decoders").EnumerateArray());
        else
            steps.Add(e);

        // Accepted shape: [Replace] [ByteFallback] [Fuse], in that order, each at most once.
        (string, string)? replace = null;
        bool byteFallback = false;
        int stage = 0;
        for (int i = 0; i < steps.Count; i++)
        {
            string type = steps[i].GetProperty("type").GetString() ?? "";
            int stepStage = type switch { "Replace" => 1, "ByteFallback" => 2, "Fuse" => 3, _ => 0 };
            if (stepStage == 0 || stepStage <= stage)
                throw Unsupported(source, $"decoder step {i}", $"'{type}' (only Replace, ByteFallback, Fuse in that order are implemented)");
            stage = stepStage;
            if (type == "Replace")
                replace = ReadReplace(steps[i], source, $"decoder step {i}");
            if (type == "ByteFallback")
                byteFallback = true;
        }
        return (replace, byteFallback);
    }

    /// <summary>TemplateProcessing's single-sequence template: special tokens before and after $A.</summary>
    private static (int[] Prefix, int[] Suffix) ReadPostProcessor(JsonElement? element, string source)
    {
        if (element is not { } e)
            return ([], []);
        string type = e.GetProperty("type").GetString() ?? "";
        if (type != "TemplateProcessing")
            throw Unsupported(source, "post_processor.type", $"'{type}' (only TemplateProcessing is implemented)");
        var specials = e.GetProperty("special_tokens");
        List<int> prefix = [], suffix = [];
        bool seenSequence = false;
        foreach (var piece in e.GetProperty("single").EnumerateArray())
        {
            if (piece.TryGetProperty("Sequence", out var seq))
            {
                if (seenSequence || seq.GetProperty("id").GetString() != "A")
                    throw Unsupported(source, "post_processor.single", piece.ToString());
                seenSequence = true;
            }
            else if (piece.TryGetProperty("SpecialToken", out var special))
            {
                string name = special.GetProperty("id").GetString() ?? "";
                if (!specials.TryGetProperty(name, out var entry))
                    throw new InvalidDataException($"{source}: post_processor uses '{name}', which is not in its special_tokens.");
                foreach (var id in entry.GetProperty("ids").EnumerateArray())
                    (seenSequence ? suffix : prefix).Add(id.GetInt32());
            }
            else
            {
                throw Unsupported(source, "post_processor.single", piece.ToString());
            }
        }
        if (!seenSequence)
            throw Unsupported(source, "post_processor.single", "a template without $A");
        return ([.. prefix], [.. suffix]);
    }

    /// <summary>
    /// Feeds each entry of model.merges (reader on its '[') to <paramref name="merges"/>, in rank
    /// order. Strings are unescaped into reused buffers: 515k merges allocate nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per load: skip tier-0 JIT
    private static void ReadMerges(ref Utf8JsonReader reader, MergeBuilder merges, string source)
    {
        char[] left = new char[64], right = new char[64];
        int rank = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType == JsonTokenType.String)
            {
                // Older format: "left right".
                int length = CopyString(ref reader, ref left, source);
                var line = left.AsSpan(0, length);
                int space = line.IndexOf(' ');
                if (space < 0 || line[(space + 1)..].Contains(' '))
                    throw new InvalidDataException($"{source}: model.merges[{rank}] '{line}' is not two tokens separated by one space.");
                merges.Add(rank++, line[..space], line[(space + 1)..]);
            }
            else if (reader.TokenType == JsonTokenType.StartArray)
            {
                reader.Read();
                int leftLength = CopyString(ref reader, ref left, source);
                reader.Read();
                int rightLength = CopyString(ref reader, ref right, source);
                reader.Read();
                if (reader.TokenType != JsonTokenType.EndArray)
                    throw new InvalidDataException($"{source}: model.merges[{rank}] is not a pair of strings.");
                merges.Add(rank++, left.AsSpan(0, leftLength), right.AsSpan(0, rightLength));
            }
            else
            {
                throw new InvalidDataException($"{source}: model.merges[{rank}] is neither a pair nor a string.");
            }
        }
    }

    private static int CopyString(ref Utf8JsonReader reader, ref char[] buffer, string source)
    {
        if (reader.TokenType != JsonTokenType.String)
            throw new InvalidDataException($"{source}: model.merges holds a {reader.TokenType} where a token string belongs.");
        // Unescaped UTF-16 length never exceeds the escaped UTF-8 byte length.
        if (reader.ValueSpan.Length > buffer.Length)
            buffer = new char[reader.ValueSpan.Length];
        return reader.CopyString(buffer);
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string source, string where)
    {
        if (reader.TokenType == JsonTokenType.None)
            reader.Read();
        if (reader.TokenType != type)
            throw new InvalidDataException($"{source}: expected {type} at {where}, found {reader.TokenType}.");
    }

    private static NotSupportedException Unsupported(string source, string field, string detail) =>
        new($"{source}: unsupported {field}: {detail}.");
}
