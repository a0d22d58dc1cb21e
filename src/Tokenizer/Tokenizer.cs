using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Unicode;

namespace Pipeline.Tokenizer;

/// <summary>
/// A Hugging Face tokenizer.json tokenizer (the subset Gemma uses) that reproduces HF's Rust
/// `tokenizers` exactly:
/// <list type="number">
/// <item>added tokens (special and not) are cut out of the raw text first, leftmost-longest;</item>
/// <item>each remaining piece is normalized (Replace, e.g. " " -> "▁") and BPE-encoded as one word,
/// with ranked merges, byte fallback to &lt;0xXX&gt; tokens and a (fused) unknown token;</item>
/// <item>the post-processor's template adds e.g. &lt;bos&gt; when <c>addSpecialTokens</c> is true.</item>
/// </list>
/// Decoding is Replace ("▁" -> " "), ByteFallback (a byte run that is not valid UTF-8 becomes one
/// U+FFFD per byte) and Fuse; <c>skipSpecialTokens</c> drops special tokens before decoding.
/// <para>Lone UTF-16 surrogates in input text are encoded as U+FFFD, as HF does when a string
/// crosses into Rust (N-API, .NET's Encoding.UTF8).</para>
/// <para>Thread-safe: all state is read-only after loading except a concurrent word cache.</para>
/// </summary>
public sealed class Tokenizer
{
    private const char WordStart = MergeBuilder.WordStart;
    private const int CachedWordMaxLength = 48;
    private const int WordCacheCapacity = 200_000;  // ~25 MB at most
    private const int ScratchKeptSymbols = 1 << 16; // bigger per-thread buffers are dropped after use

    private static readonly Lazy<Tokenizer> s_gemma4 = new(() =>
    {
        using var stream = GemmaTokenizerData.OpenTokenizerJson();
        return new Tokenizer(TokenizerFile.Read(stream, "embedded Gemma-4 tokenizer.json"));
    });

    private readonly string[] _tokens;                 // [id] -> token text; null where no token has the id
    private readonly Dictionary<string, int> _addedIds; // added tokens take precedence in TokenToId, as in HF
    private readonly VocabIndex _vocabIds;             // model vocabulary: BPE's initial symbols
    private readonly int[] _charToId;                  // [65536] single-UTF-16-unit tokens, -1 if none
    private readonly int[]? _byteToId;                 // [256] <0xXX> ids when byte fallback is on; -1 if missing
    private readonly int _unkId;                       // -1: no unknown token (unknown chars are dropped, as HF does)
    private readonly bool _fuseUnk;
    private readonly MergeTable _merges;
    private readonly AddedTokenMatcher _addedTokens;
    private readonly bool[] _isSpecial;                // [id]
    private readonly short[] _byteOfToken;             // [id] -> byte value for decoder ByteFallback, -1 otherwise
    private readonly int[] _prefixIds, _suffixIds;     // post-processor template around the text
    private readonly (string Pattern, string Content)? _normalizer;
    private readonly (string Pattern, string Content)? _decoderReplace;

    // A word ends before "▁" unless the preceding char could be merged with it, that is unless
    // some merge result holds "c▁" (only '>' in Gemma's merges). Splitting there is exact, since
    // no merge can cross, and it makes words short enough to cache.
    private readonly bool _splitWords;
    private readonly HashSet<char> _glueBeforeWordStart;

    private readonly ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _wordCacheLookup;
    private int _wordCacheCount;

    [ThreadStatic] private static Scratch? t_scratch;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per load: skip tier-0 JIT
    private Tokenizer(TokenizerFile file)
    {
        string source = file.Source;
        _vocabIds = file.VocabIds;

        int size = file.Vocab.Length;
        foreach (var added in file.AddedTokens)
            size = Math.Max(size, added.Id + 1);
        _tokens = new string[size];
        file.Vocab.CopyTo(_tokens, 0);
        _isSpecial = new bool[size];
        _addedIds = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var added in file.AddedTokens)
        {
            _tokens[added.Id] = added.Content;
            _addedIds[added.Content] = added.Id;
            _isSpecial[added.Id] = added.Special;
        }
        _addedTokens = new AddedTokenMatcher(file.AddedTokens.Select(t => (t.Content, t.Id)));

        _charToId = new int[65536];
        _charToId.AsSpan().Fill(-1);
        for (int id = 0; id < file.Vocab.Length; id++)
        {
            if (file.Vocab[id] is { Length: 1 } single)
                _charToId[single[0]] = id;
        }

        _unkId = -1;
        if (file.UnkToken is { } unk)
        {
            _unkId = _vocabIds.TryGetId(unk, out int id) ? id
                : throw new InvalidDataException($"{source}: model.unk_token '{unk}' is not in the vocabulary.");
        }
        _fuseUnk = file.FuseUnk;
        if (file.ByteFallback)
        {
            _byteToId = new int[256];
            for (int b = 0; b < 256; b++)
                _byteToId[b] = _vocabIds.TryGetId($"<0x{b:X2}>", out int id) ? id : -1;
        }

        _normalizer = file.NormalizerReplace;
        _decoderReplace = file.DecoderReplace;
        _prefixIds = file.PrefixIds;
        _suffixIds = file.SuffixIds;
        foreach (int id in _prefixIds.Concat(_suffixIds))
        {
            if ((uint)id >= (uint)_tokens.Length || _tokens[id] is null)
                throw new InvalidDataException($"{source}: post_processor adds token id {id}, which is not in the vocabulary.");
        }

        _merges = file.Merges.Merges;
        _glueBeforeWordStart = file.Merges.GlueBeforeWordStart;
        // Splitting needs "▁" to be a symbol of its own that ends any unknown-char run, and no
        // merge whose operand stands for more than its characters (byte or unknown tokens).
        _splitWords = _charToId[WordStart] >= 0 && !file.Merges.TouchesByteTokens
            && (_unkId < 0 || !_merges.HasOperand(_unkId));

        _byteOfToken = new short[size];
        for (int id = 0; id < size; id++)
            _byteOfToken[id] = file.DecoderByteFallback && _tokens[id] is { } t ? ByteFallbackValue(t) : (short)-1;

        _wordCacheLookup = _wordCache.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Loads a tokenizer.json, a gzipped one, or a folder holding tokenizer.json(.gz).</summary>
    public static Tokenizer Load(string path) => new(TokenizerFile.Read(path));

    /// <summary>Loads a tokenizer.json (plain or gzipped) from a stream; <paramref name="sourceName"/> names it in errors.</summary>
    public static Tokenizer Load(Stream stream, string sourceName) => new(TokenizerFile.Read(stream, sourceName));

    /// <summary>The Gemma-4 tokenizer embedded in this assembly; loaded once and shared.</summary>
    public static Tokenizer LoadGemma4() => s_gemma4.Value;

    /// <summary>Number of token ids (the largest id + 1).</summary>
    public int VocabSize => _tokens.Length;

    /// <summary>The token the post-processor puts first (&lt;bos&gt; for Gemma), or the id of "&lt;bos&gt;"; -1 if neither.</summary>
    public int BosId => _prefixIds.Length > 0 ? _prefixIds[0] : TokenToId("<bos>") ?? -1;

    public bool IsSpecial(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    public int? TokenToId(string token) =>
        _addedIds.TryGetValue(token, out int id) ? id : _vocabIds.TryGetId(token, out id) ? id : null;

    public string IdToToken(int id)
    {
        CheckId(id, -1);
        return _tokens[id];
    }

    /// <summary>
    /// Encodes like HF's encode(text, add_special_tokens); <paramref name="addSpecialTokens"/>
    /// applies the post-processor template (for Gemma: &lt;bos&gt; first).
    /// </summary>
    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        var output = new List<int>(text.Length / 3 + 4);
        Encode(text, output, addSpecialTokens);
        return [.. output];
    }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="output"/>.</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> output, bool addSpecialTokens)
    {
        if (addSpecialTokens)
            output.AddRange(_prefixIds);
        char[]? repaired = RepairLoneSurrogates(ref text);
        try
        {
            var scratch = t_scratch ??= new Scratch();
            int start = 0;
            while (_addedTokens.FindNext(text, start, out int at, out int length, out int tokenId))
            {
                EncodeSegment(text[start..at], output, scratch);
                output.Add(tokenId);
                start = at + length;
            }
            EncodeSegment(text[start..], output, scratch);
            if (scratch.Ids.Length > ScratchKeptSymbols)
                t_scratch = null; // a huge input should not pin megabytes on every thread that saw one
        }
        finally
        {
            if (repaired is not null)
                ArrayPool<char>.Shared.Return(repaired);
        }
        if (addSpecialTokens)
            output.AddRange(_suffixIds);
    }

    /// <summary>
    /// Decodes like HF's decode(ids, skip_special_tokens). Unlike HF, which silently drops ids it
    /// does not know, an id outside the vocabulary throws <see cref="ArgumentOutOfRangeException"/>
    /// naming the id and its position.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var text = new StringBuilder(ids.Length * 4);
        Span<byte> stackRun = stackalloc byte[256];
        byte[]? rented = null;
        Span<byte> run = stackRun;
        int runLength = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            CheckId(id, i);
            if (skipSpecialTokens && _isSpecial[id])
                continue;
            int b = _byteOfToken[id];
            if (b >= 0)
            {
                if (runLength == run.Length)
                {
                    byte[] bigger = ArrayPool<byte>.Shared.Rent(run.Length * 2);
                    run.CopyTo(bigger);
                    if (rented is not null)
                        ArrayPool<byte>.Shared.Return(rented);
                    run = rented = bigger;
                }
                run[runLength++] = (byte)b;
                continue;
            }
            AppendByteRun(run[..runLength], text);
            runLength = 0;
            AppendPiece(id, text);
        }
        AppendByteRun(run[..runLength], text);
        if (rented is not null)
            ArrayPool<byte>.Shared.Return(rented);
        return text.ToString();
    }

    // ---- pieces shared with StreamingDetokenizer and the tests' reference twin ----

    internal VocabIndex Vocabulary => _vocabIds;

    internal MergeTable Merges => _merges;

    internal IEnumerable<(string Content, int Id)> AddedTokens =>
        _addedIds.Select(pair => (pair.Key, pair.Value));

    internal void CheckId(int id, int index)
    {
        if ((uint)id >= (uint)_tokens.Length || _tokens[id] is null)
        {
            string where = index >= 0 ? $" at index {index}" : "";
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id}{where} is not in the vocabulary (size {_tokens.Length}).");
        }
    }

    /// <summary>The byte a &lt;0xXX&gt; token stands for in decoding, or -1.</summary>
    internal int ByteOfToken(int id) => _byteOfToken[id];

    /// <summary>Appends a non-byte token's decoded text.</summary>
    internal void AppendPiece(int id, StringBuilder text)
    {
        string token = _tokens[id];
        if (_decoderReplace is not { } r)
        {
            text.Append(token);
        }
        else if (r.Pattern.Length == 1 && r.Content.Length == 1)
        {
            int start = text.Length;
            text.Append(token);
            text.Replace(r.Pattern[0], r.Content[0], start, token.Length);
        }
        else
        {
            text.Append(token.Replace(r.Pattern, r.Content, StringComparison.Ordinal));
        }
    }

    /// <summary>HF ByteFallback: a valid UTF-8 run decodes normally, otherwise every byte becomes U+FFFD.</summary>
    internal static void AppendByteRun(ReadOnlySpan<byte> run, StringBuilder text)
    {
        if (run.IsEmpty)
            return;
        if (!Utf8.IsValid(run))
        {
            text.Append('\uFFFD', run.Length);
            return;
        }
        Span<char> chars = run.Length <= 512 ? stackalloc char[run.Length] : new char[run.Length];
        int count = Encoding.UTF8.GetChars(run, chars);
        text.Append(chars[..count]);
    }

    // ---- encoding ----

    private void EncodeSegment(ReadOnlySpan<char> raw, List<int> output, Scratch scratch)
    {
        if (raw.IsEmpty)
            return;
        ReadOnlySpan<char> text = Normalize(raw, scratch);
        if (!_splitWords)
        {
            EncodeWord(text, output, scratch);
            return;
        }
        int wordStart = 0;
        int search = 1;
        while (search < text.Length)
        {
            int offset = text[search..].IndexOf(WordStart);
            if (offset < 0)
                break;
            int p = search + offset;
            char before = text[p - 1];
            if (before != WordStart && !_glueBeforeWordStart.Contains(before))
            {
                EncodeWord(text[wordStart..p], output, scratch);
                wordStart = p;
            }
            search = p + 1;
        }
        EncodeWord(text[wordStart..], output, scratch);
    }

    private ReadOnlySpan<char> Normalize(ReadOnlySpan<char> raw, Scratch scratch)
    {
        if (_normalizer is not { } n)
            return raw;
        if (n.Pattern.Length == 1 && n.Content.Length == 1)
        {
            char[] buffer = scratch.Chars(raw.Length);
            raw.Replace(buffer, n.Pattern[0], n.Content[0]);
            return buffer.AsSpan(0, raw.Length);
        }
        return raw.ToString().Replace(n.Pattern, n.Content, StringComparison.Ordinal);
    }

    private void EncodeWord(ReadOnlySpan<char> word, List<int> output, Scratch scratch)
    {
        bool cacheable = word.Length <= CachedWordMaxLength;
        if (cacheable && _wordCacheLookup.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }
        int count = InitialSymbols(word, scratch);
        count = MergeSymbols(scratch, count);
        var ids = scratch.Ids.AsSpan(0, count);
        output.AddRange(ids);
        if (cacheable && _wordCacheCount < WordCacheCapacity && _wordCacheLookup.TryAdd(word, ids.ToArray()))
            Interlocked.Increment(ref _wordCacheCount);
    }

    /// <summary>One symbol per character (code point), as HF's BPE::merge_word builds them.</summary>
    private int InitialSymbols(ReadOnlySpan<char> word, Scratch scratch)
    {
        int[] ids = scratch.Symbols(word.Length * 3); // a BMP char falls back to at most 3 bytes, a pair to 4
        int n = 0;
        bool pendingUnk = false;
        for (int i = 0; i < word.Length;)
        {
            int charLength = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var ch = word.Slice(i, charLength);
            i += charLength;
            int id = charLength == 1 ? _charToId[ch[0]] : _vocabIds.TryGetId(ch, out int pairId) ? pairId : -1;
            if (id >= 0)
            {
                if (pendingUnk)
                {
                    ids[n++] = _unkId;
                    pendingUnk = false;
                }
                ids[n++] = id;
                continue;
            }
            if (_byteToId is not null && TryByteFallback(ch, ids, ref n))
                continue; // HF leaves a pending unknown token pending here; so do we
            if (_unkId < 0)
                continue;
            if (pendingUnk && !_fuseUnk)
                ids[n++] = _unkId;
            pendingUnk = true;
        }
        if (pendingUnk)
            ids[n++] = _unkId;
        return n;
    }

    private bool TryByteFallback(ReadOnlySpan<char> ch, int[] ids, ref int n)
    {
        Span<byte> utf8 = stackalloc byte[4];
        int length = Encoding.UTF8.GetBytes(ch, utf8);
        for (int k = 0; k < length; k++)
        {
            if (_byteToId![utf8[k]] < 0)
                return false;
        }
        for (int k = 0; k < length; k++)
            ids[n++] = _byteToId![utf8[k]];
        return true;
    }

    /// <summary>
    /// HF's Word::merge_all without dropout: repeatedly merge the adjacent pair with the lowest
    /// rank, leftmost first, using a min-heap of (rank, position) and a linked list of symbols,
    /// O(n log n). Stale heap entries are skipped by re-checking the pair. Leaves the result in
    /// scratch.Ids[0..returned count].
    /// </summary>
    private int MergeSymbols(Scratch scratch, int n)
    {
        if (n < 2)
            return n;
        int[] ids = scratch.Ids, prev = scratch.Prev, next = scratch.Next;
        var heap = new MinHeap(scratch.Heap);
        for (int i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1;
        }
        next[n - 1] = -1;
        for (int i = 0; i + 1 < n; i++)
        {
            if (_merges.TryGet(ids[i], ids[i + 1], out int rank, out _))
                heap.Push(rank, i);
        }
        while (heap.TryPop(out int rank, out int pos))
        {
            int right = next[pos];
            if (ids[pos] < 0 || right < 0)
                continue;
            if (!_merges.TryGet(ids[pos], ids[right], out int currentRank, out int merged) || currentRank != rank)
                continue;
            ids[pos] = merged;
            ids[right] = -1;
            int after = next[right];
            next[pos] = after;
            if (after >= 0)
                prev[after] = pos;
            int before = prev[pos];
            if (before >= 0 && _merges.TryGet(ids[before], merged, out int r, out _))
                heap.Push(r, before);
            if (after >= 0 && _merges.TryGet(merged, ids[after], out r, out _))
                heap.Push(r, pos);
        }
        int count = 0;
        for (int i = 0; i >= 0; i = next[i])
            ids[count++] = ids[i];
        return count;
    }

    // ---- loading helpers ----

    /// <summary>
    /// HF's ByteFallback test, on the token after the decoder's Replace: six UTF-8 bytes
    /// "&lt;0x" XX "&gt;" where XX parses as a base-16 u8 (Rust's from_str_radix, which also takes
    /// a leading '+').
    /// </summary>
    private short ByteFallbackValue(string token)
    {
        if (_decoderReplace is { } r && (token.Length == 6 || r.Pattern.Length != r.Content.Length))
            token = token.Replace(r.Pattern, r.Content, StringComparison.Ordinal);
        if (token.Length != 6 || !token.StartsWith("<0x", StringComparison.Ordinal) || token[5] != '>')
            return -1;
        int value = 0;
        for (int k = 3; k < 5; k++)
        {
            char c = token[k];
            if (k == 3 && c == '+')
                continue;
            int digit = char.IsAsciiDigit(c) ? c - '0'
                : c is >= 'a' and <= 'f' ? c - 'a' + 10
                : c is >= 'A' and <= 'F' ? c - 'A' + 10 : -1;
            if (digit < 0)
                return -1;
            value = value * 16 + digit;
        }
        return (short)value;
    }

    /// <summary>
    /// Replaces unpaired UTF-16 surrogates with U+FFFD (what crossing into Rust does to them).
    /// Returns the rented buffer now behind <paramref name="text"/>, or null when nothing changed.
    /// </summary>
    private static char[]? RepairLoneSurrogates(ref ReadOnlySpan<char> text)
    {
        int first = text.IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first < 0 || !HasLoneSurrogate(text[first..]))
            return null;
        char[] buffer = ArrayPool<char>.Shared.Rent(text.Length);
        text.CopyTo(buffer);
        for (int i = first; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                i++;
            else if (char.IsSurrogate(text[i]))
                buffer[i] = '\uFFFD';
        }
        text = buffer.AsSpan(0, text.Length);
        return buffer;
    }

    private static bool HasLoneSurrogate(ReadOnlySpan<char> text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                i++;
            else if (char.IsSurrogate(text[i]))
                return true;
        }
        return false;
    }

    /// <summary>Per-thread buffers for encoding, grown on demand and reused.</summary>
    private sealed class Scratch
    {
        public char[] Normalized = new char[256];
        public int[] Ids = new int[256], Prev = new int[256], Next = new int[256];
        public long[] Heap = new long[768];

        public char[] Chars(int length)
        {
            if (Normalized.Length < length)
                Normalized = new char[Math.Max(length, Normalized.Length * 2)];
            return Normalized;
        }

        public int[] Symbols(int capacity)
        {
            if (Ids.Length < capacity)
            {
                int size = Math.Max(capacity, Ids.Length * 2);
                Ids = new int[size];
                Prev = new int[size];
                Next = new int[size];
                Heap = new long[size * 3];
            }
            return Ids;
        }
    }

    /// <summary>Binary min-heap of (rank, position) packed in a long: rank first, then position.</summary>
    private ref struct MinHeap(long[] items)
    {
        private readonly long[] _items = items;
        private int _count;

        public void Push(int rank, int position)
        {
            long item = ((long)rank << 32) | (uint)position;
            int i = _count++;
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (_items[parent] <= item)
                    break;
                _items[i] = _items[parent];
                i = parent;
            }
            _items[i] = item;
        }

        public bool TryPop(out int rank, out int position)
        {
            if (_count == 0)
            {
                rank = position = 0;
                return false;
            }
            long top = _items[0];
            long last = _items[--_count];
            int i = 0;
            while (true)
            {
                int child = 2 * i + 1;
                if (child >= _count)
                    break;
                if (child + 1 < _count && _items[child + 1] < _items[child])
                    child++;
                if (last <= _items[child])
                    break;
                _items[i] = _items[child];
                i = child;
            }
            _items[i] = last;
            rank = (int)(top >> 32);
            position = (int)(uint)top;
            return true;
        }
    }
}
