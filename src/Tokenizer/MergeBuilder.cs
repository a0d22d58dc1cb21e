using System.Runtime.CompilerServices;

namespace Pipeline.Tokenizer;

/// <summary>
/// Turns model.merges (pairs of token strings, in rank order) into a <see cref="MergeTable"/> of
/// ids, and notes what exact word splitting has to respect.
/// </summary>
internal sealed class MergeBuilder(string source, string[] vocab, VocabIndex index)
{
    public const char WordStart = '\u2581'; // "▁"

    private char[] _joined = new char[128];
    private int _lastMergedId = -1;

    public MergeTable Merges { get; } = new(1 << 19);

    /// <summary>Chars c such that some merge result holds "c▁" (c != '▁'): a "▁" after c may not start a new word.</summary>
    public HashSet<char> GlueBeforeWordStart { get; } = [];

    /// <summary>Whether any merge has a &lt;0xXX&gt; token as an operand.</summary>
    public bool TouchesByteTokens { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs 515k times in one load: skip tier-0 JIT
    public void Add(int rank, ReadOnlySpan<char> left, ReadOnlySpan<char> right)
    {
        if (!index.TryGetId(left, out int leftId) || !index.TryGetId(right, out int rightId))
            throw new InvalidDataException($"{source}: model.merges[{rank}] ('{left}', '{right}') uses a token missing from the vocabulary.");
        int length = left.Length + right.Length;
        if (length > _joined.Length)
            _joined = new char[length * 2];
        left.CopyTo(_joined);
        right.CopyTo(_joined.AsSpan(left.Length));
        var merged = _joined.AsSpan(0, length);

        // Converted SentencePiece files list merges grouped by result, in id order: the result is
        // almost always the previous merge's or the next id. A string compare on that guess avoids
        // a hash lookup into cold memory; a wrong guess falls back to the index.
        int mergedId = _lastMergedId;
        if (!Is(mergedId, merged) && !Is(++mergedId, merged) && !index.TryGetId(merged, out mergedId))
            throw new InvalidDataException($"{source}: model.merges[{rank}] makes '{merged}', which is not in the vocabulary.");
        _lastMergedId = mergedId;
        Merges.Set(leftId, rightId, rank, mergedId);

        for (int k = 1; k < merged.Length; k++)
        {
            if (merged[k] == WordStart && merged[k - 1] != WordStart)
                GlueBeforeWordStart.Add(merged[k - 1]);
        }
        if (IsByteToken(left) || IsByteToken(right))
            TouchesByteTokens = true;
    }

    private bool Is(int id, ReadOnlySpan<char> token) =>
        (uint)id < (uint)vocab.Length && vocab[id] is { } candidate && token.SequenceEqual(candidate);

    private static bool IsByteToken(ReadOnlySpan<char> t) =>
        t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>';
}
