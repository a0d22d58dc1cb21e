using System.Buffers;

namespace Pipeline.Tokenizer;

/// <summary>
/// Finds added tokens (special and non-special) in raw text with HF's leftmost-longest rule:
/// the earliest position where any added token starts wins, and there the longest token.
/// A character trie walked from each candidate position; candidates are found with a
/// vectorized search over the tokens' first characters.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly SearchValues<char> _firstChars;
    private readonly Dictionary<long, int> _children = new(); // (node << 16 | char) -> child node
    private readonly List<int> _tokenAtNode = [-1];            // node -> token id, or -1

    public AddedTokenMatcher(IEnumerable<(string Content, int Id)> tokens)
    {
        var first = new HashSet<char>();
        foreach (var (content, id) in tokens)
        {
            if (content.Length == 0)
                continue;
            first.Add(content[0]);
            int node = 0;
            foreach (char c in content)
            {
                long key = ((long)node << 16) | c;
                if (!_children.TryGetValue(key, out int child))
                {
                    child = _tokenAtNode.Count;
                    _tokenAtNode.Add(-1);
                    _children.Add(key, child);
                }
                node = child;
            }
            _tokenAtNode[node] = id;
        }
        _firstChars = SearchValues.Create([.. first]);
    }

    /// <summary>
    /// The next added token at or after <paramref name="start"/>: its position, length and id;
    /// false when there is none.
    /// </summary>
    public bool FindNext(ReadOnlySpan<char> text, int start, out int position, out int length, out int tokenId)
    {
        int i = start;
        while (i < text.Length)
        {
            int offset = text[i..].IndexOfAny(_firstChars);
            if (offset < 0)
                break;
            i += offset;
            int matchLength = LongestAt(text, i, out tokenId);
            if (matchLength > 0)
            {
                position = i;
                length = matchLength;
                return true;
            }
            i++;
        }
        position = length = tokenId = 0;
        return false;
    }

    private int LongestAt(ReadOnlySpan<char> text, int position, out int tokenId)
    {
        int node = 0, bestLength = 0;
        tokenId = -1;
        for (int i = position; i < text.Length; i++)
        {
            if (!_children.TryGetValue(((long)node << 16) | text[i], out node))
                break;
            int id = _tokenAtNode[node];
            if (id >= 0)
            {
                bestLength = i - position + 1;
                tokenId = id;
            }
        }
        return bestLength;
    }
}
