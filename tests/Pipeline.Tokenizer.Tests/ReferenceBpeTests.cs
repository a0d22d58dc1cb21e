using System.Text;

namespace Pipeline.Tokenizer.Tests;

/// <summary>
/// The fast encoder (word splitting, word cache, heap merges) against a plain reference twin on
/// the same vocabulary and merges: whole segments, quadratic "merge the lowest-ranked leftmost
/// pair until none is left", added tokens found by trying every one.
/// </summary>
public class ReferenceBpeTests
{
    private static readonly Tokenizer s_fast = Tokenizer.LoadGemma4();
    private static readonly ILookup<char, (string Content, int Id)> s_addedByFirstChar =
        s_fast.AddedTokens.ToLookup(t => t.Content[0]);

    [Fact]
    public void RandomStrings_MatchReference()
    {
        var random = new RandomText(7);
        for (int i = 0; i < 1000; i++)
        {
            string text = random.Next();
            Assert.True(ReferenceEncode(text).SequenceEqual(s_fast.Encode(text)), $"#{i} {ConformanceTests.Escape(text)}");
        }
    }

    [Theory]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("abababababababababababababababa")]
    [InlineData("                                                                  x")]
    [InlineData("x> </y>   </a> </b")]
    [InlineData("Mississippi Mississippi Mississippi")]
    [InlineData("▁▁▁ ▁▁ ▁ ▁x▁y▁")]
    public void RepetitiveWords_MatchReference(string text)
    {
        Assert.Equal(ReferenceEncode(text), s_fast.Encode(text));
        Assert.Equal(ReferenceEncode(text), s_fast.Encode(text)); // second time from the word cache
    }

    [Fact]
    public void LongWords_MatchReference()
    {
        var random = new Random(11);
        for (int i = 0; i < 6; i++)
        {
            var text = new StringBuilder();
            while (text.Length < 1500)
                text.Append("abcdefghijklmnopqrstuvwxyz"[random.Next(i + 2)]);
            Assert.Equal(ReferenceEncode(text.ToString()), s_fast.Encode(text.ToString()));
        }
    }

    private static List<int> ReferenceEncode(string text)
    {
        var output = new List<int>();
        var segment = new StringBuilder();
        for (int i = 0; i < text.Length;)
        {
            var (id, length) = LongestAddedTokenAt(text, i);
            if (length == 0)
            {
                segment.Append(text[i++]);
                continue;
            }
            output.AddRange(ReferenceWord(segment.ToString().Replace(' ', '▁')));
            segment.Clear();
            output.Add(id);
            i += length;
        }
        output.AddRange(ReferenceWord(segment.ToString().Replace(' ', '▁')));
        return output;
    }

    private static (int Id, int Length) LongestAddedTokenAt(string text, int position)
    {
        (int Id, int Length) best = (0, 0);
        foreach (var token in s_addedByFirstChar[text[position]])
        {
            if (token.Content.Length > best.Length && text.AsSpan(position).StartsWith(token.Content, StringComparison.Ordinal))
                best = (token.Id, token.Content.Length);
        }
        return best;
    }

    private static List<int> ReferenceWord(string word)
    {
        var symbols = new List<int>();
        for (int i = 0; i < word.Length; i += char.IsSurrogatePair(word, i) ? 2 : 1)
        {
            string ch = char.IsSurrogatePair(word, i) ? word.Substring(i, 2) : word[i].ToString();
            if (s_fast.Vocabulary.TryGetId(ch, out int id))
                symbols.Add(id);
            else
                symbols.AddRange(Encoding.UTF8.GetBytes(ch).Select(b => 238 + b)); // <0x00> is id 238
        }
        while (true)
        {
            int bestRank = int.MaxValue, bestAt = -1, bestMerged = 0;
            for (int k = 0; k + 1 < symbols.Count; k++)
            {
                if (s_fast.Merges.TryGet(symbols[k], symbols[k + 1], out int rank, out int merged) && rank < bestRank)
                    (bestRank, bestAt, bestMerged) = (rank, k, merged);
            }
            if (bestAt < 0)
                return symbols;
            symbols[bestAt] = bestMerged;
            symbols.RemoveAt(bestAt + 1);
        }
    }
}
