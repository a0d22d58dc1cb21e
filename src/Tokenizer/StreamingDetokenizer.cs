using System.Text;

namespace Pipeline.Tokenizer;

/// <summary>One step of <see cref="StreamingDetokenizer"/>: the text that became final, and whether a stop string ended the stream.</summary>
public readonly record struct DetokenizerResult(string Delta, bool Stopped, string? MatchedStop);

/// <summary>
/// Turns a stream of token ids (one session's output) into text deltas whose concatenation equals
/// <see cref="Tokenizer.Decode"/> of all ids, cut at the first stop string.
/// <list type="bullet">
/// <item>A run of &lt;0xXX&gt; byte tokens is held until a token ends it: HF decodes a run as a whole
/// (valid UTF-8, or one U+FFFD per byte), so no part of it is final earlier. Deltas therefore
/// never end inside a UTF-8 sequence or a surrogate pair.</item>
/// <item>With <c>skipSpecialTokens</c>, special tokens vanish before decoding, so they do not end a
/// byte run either, exactly as in <see cref="Tokenizer.Decode"/>.</item>
/// <item>Stop strings are found across token boundaries: text that could still be the start of a
/// stop string is held back. On a match the text before it is emitted, the stop text and
/// everything after are dropped, and the stream is over (later pushes return empty deltas).
/// Of several matches the one that ends first wins, then the longest.</item>
/// </list>
/// Not thread-safe: one instance per stream.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly string[] _stopStrings;
    private readonly int _longestStop;
    private readonly List<byte> _byteRun = [];
    private readonly StringBuilder _pending = new(); // decoded text not yet emitted
    private string? _matchedStop;
    private bool _stopped;

    public StreamingDetokenizer(Tokenizer tokenizer, bool skipSpecialTokens, IReadOnlyList<string>? stopStrings = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _stopStrings = [.. stopStrings ?? []];
        for (int i = 0; i < _stopStrings.Length; i++)
        {
            string stop = _stopStrings[i] ?? throw new ArgumentException($"Stop string {i} is null.", nameof(stopStrings));
            if (stop.Length == 0)
                throw new ArgumentException($"Stop string {i} is empty.", nameof(stopStrings));
            if (char.IsLowSurrogate(stop[0]) || char.IsHighSurrogate(stop[^1]))
                throw new ArgumentException($"Stop string {i} starts or ends inside a surrogate pair.", nameof(stopStrings));
            _longestStop = Math.Max(_longestStop, stop.Length);
        }
    }

    /// <summary>Whether a stop string has ended the stream (in <see cref="Push"/> or <see cref="Flush"/>).</summary>
    public bool Stopped => _stopped;

    /// <summary>The stop string that ended the stream, if any.</summary>
    public string? MatchedStop => _matchedStop;

    public DetokenizerResult Push(int id)
    {
        _tokenizer.CheckId(id, -1);
        if (_stopped)
            return new DetokenizerResult("", true, _matchedStop);
        if (_skipSpecialTokens && _tokenizer.IsSpecial(id))
            return new DetokenizerResult("", false, null);
        int b = _tokenizer.ByteOfToken(id);
        if (b >= 0)
        {
            _byteRun.Add((byte)b);
            return new DetokenizerResult("", false, null);
        }
        EndByteRun();
        _tokenizer.AppendPiece(id, _pending);
        return Release(final: false);
    }

    /// <summary>
    /// Ends the stream: returns everything still held (an open byte run, a possible stop prefix),
    /// cut before a stop string that only the held text completes (see <see cref="Stopped"/>).
    /// </summary>
    public string Flush()
    {
        if (_stopped)
            return "";
        EndByteRun();
        return Release(final: true).Delta;
    }

    private void EndByteRun()
    {
        if (_byteRun.Count == 0)
            return;
        Tokenizer.AppendByteRun(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_byteRun), _pending);
        _byteRun.Clear();
    }

    private DetokenizerResult Release(bool final)
    {
        string text = _pending.ToString();
        // Held text holds no complete stop (it would have matched already), so any match ends
        // in the newest text: searching the whole pending buffer finds it.
        int matchEnd = int.MaxValue, matchStart = 0;
        string? matched = null;
        foreach (string stop in _stopStrings)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (at + stop.Length < matchEnd || (at + stop.Length == matchEnd && at < matchStart)))
            {
                matchEnd = at + stop.Length;
                matchStart = at;
                matched = stop;
            }
        }
        if (matched is not null)
        {
            _stopped = true;
            _matchedStop = matched;
            _pending.Clear();
            return new DetokenizerResult(text[..matchStart], true, matched);
        }

        int hold = final ? 0 : LongestStopPrefixSuffix(text);
        _pending.Clear();
        _pending.Append(text, text.Length - hold, hold);
        return new DetokenizerResult(text[..^hold], false, null);
    }

    /// <summary>Length of the longest suffix of <paramref name="text"/> that is a proper prefix of some stop string.</summary>
    private int LongestStopPrefixSuffix(string text)
    {
        for (int length = Math.Min(text.Length, _longestStop - 1); length > 0; length--)
        {
            var suffix = text.AsSpan(text.Length - length);
            foreach (string stop in _stopStrings)
            {
                if (stop.Length > length && stop.AsSpan().StartsWith(suffix, StringComparison.Ordinal))
                    return length;
            }
        }
        return 0;
    }
}
