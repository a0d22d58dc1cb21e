using System.Text;

namespace Pipeline.Tokenizer.Tests;

/// <summary>
/// Seeded random strings across what a tokenizer meets: scripts, emoji, control characters,
/// astral planes, special and added token strings (whole and broken), long whitespace runs.
/// Always well-formed UTF-16 (the Rust oracle rejects lone surrogates).
/// </summary>
internal sealed class RandomText(int seed)
{
    private static readonly string[] s_words =
    [
        "the", "Hello", "world", "tokenizer", "Gemma", "naïve", "café", "Straße", "Äpfel", "über", "ﬁ",
        "привет", "мир", "Ελληνικά", "שלום", "مرحبا", "नमस्ते", "สวัสดี", "中文", "日本語", "한국어", "カタカナ",
        "def", "return", "> </", "<p> </p>", "a>  </b", "x+=1;", "{\"a\":1}", "<div>", "</td>", "http://example.com/?q=1&r=2", "3.14159", "1e-9",
        "👋", "👨‍👩‍👧‍👦", "🇫🇷", "👍🏽", "🤖", "∑", "∀x∈ℝ", "½", "™", "—", "…", "«»", "‘’", "\u00A0", "\u200B", "\uFEFF",
    ];

    private static readonly string[] s_tokenStrings =
    [
        "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<|turn>", "<turn|>", "<|tool_call>", "<tool_call|>", "<|\"|>",
        "<|channel>", "<channel|>", "<|think|>", "<|image|>", "<|video|>", "<|tool_response>", "<tool_response|>",
        "<unused0>", "<unused17>", "<unused236>", "[multimodal]", "<table>", "</table>", "<h1>", "<code>", "<bbox>",
        "<|tur", "turn|>", "<unused99999>", "<0x41>", "<0xZZ>", "<|", "|>", "<<bos>>", "<bos", "▁", "▁▁▁",
    ];

    private static readonly (int From, int To)[] s_blocks =
    [
        (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x22FF), (0x3040, 0x30FF),
        (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF),
        (0x1F300, 0x1FAFF), (0x10000, 0x1FFFF), (0x20000, 0x2FFFF), (0xE0000, 0xE007F), (0xF0000, 0x10FFFF),
    ];

    private readonly Random _random = new(seed);

    public Random Random => _random;

    public string Next()
    {
        var text = new StringBuilder();
        int parts = _random.Next(1, 12);
        for (int i = 0; i < parts; i++)
            AppendPart(text);
        return text.ToString();
    }

    /// <summary>A string of roughly <paramref name="length"/> UTF-16 units of random code points from every plane.</summary>
    public string RandomCodePoints(int length)
    {
        var text = new StringBuilder(length + 2);
        while (text.Length < length)
            text.Append(char.ConvertFromUtf32(AnyScalar()));
        return text.ToString();
    }

    private void AppendPart(StringBuilder text)
    {
        switch (_random.Next(10))
        {
            case 0:
            case 1:
                text.Append(s_words[_random.Next(s_words.Length)]);
                break;
            case 2:
                text.Append(' ', _random.Next(1, 4));
                break;
            case 3:
                text.Append(s_tokenStrings[_random.Next(s_tokenStrings.Length)]);
                break;
            case 4:
                AppendWhitespaceRun(text);
                break;
            case 5:
                text.Append((char)_random.Next(0, 0x20)); // C0 controls, incl. NUL
                if (_random.Next(2) == 0)
                    text.Append((char)_random.Next(0x7F, 0xA0)); // DEL and C1 controls, U+0085
                break;
            case 6:
                text.Append(char.ConvertFromUtf32(AnyScalar()));
                break;
            default:
                var (from, to) = s_blocks[_random.Next(s_blocks.Length)];
                int count = _random.Next(1, 8);
                for (int k = 0; k < count; k++)
                    text.Append(char.ConvertFromUtf32(_random.Next(from, to + 1)));
                break;
        }
    }

    private void AppendWhitespaceRun(StringBuilder text)
    {
        string[] pieces = [" ", "\t", "\n", "\r\n", "▁", "\u3000", "\u2028", "\u0085"];
        int length = _random.Next(2) == 0 ? _random.Next(2, 40) : _random.Next(30, 300);
        if (_random.Next(2) == 0)
        {
            text.Append(pieces[_random.Next(pieces.Length)][0], length); // one kind: crosses the 31-long added tokens
            return;
        }
        for (int k = 0; k < length; k++)
            text.Append(pieces[_random.Next(pieces.Length)]);
    }

    private int AnyScalar()
    {
        while (true)
        {
            int cp = _random.Next(0, 0x110000);
            if (cp is < 0xD800 or > 0xDFFF)
                return cp;
        }
    }
}
