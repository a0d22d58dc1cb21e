using System.Globalization;
using System.Numerics;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

internal enum TokenKind
{
    Data,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    Eof,
}

internal readonly record struct Token(TokenKind Kind, string Text, object? Value, int Line, int Column)
{
    public bool Is(TokenKind kind, string text) => Kind == kind && Text == text;

    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;

    public bool IsOp(string op) => Kind == TokenKind.Operator && Text == op;

    public string Describe() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VariableEnd => "end of print statement",
        TokenKind.BlockBegin => "begin of statement block",
        TokenKind.VariableBegin => "begin of print statement",
        TokenKind.Data => "template data",
        TokenKind.String => "string",
        TokenKind.Integer => "integer",
        TokenKind.Float => "float",
        _ => Text,
    };
}

/// <summary>
/// Splits template source into tokens the way Jinja2's lexer does with transformers' settings
/// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False): newlines normalized to "\n", one
/// trailing newline dropped, "-" and "+" whitespace control, raw blocks and comments handled here.
/// </summary>
internal sealed class Lexer
{
    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", "<=", ">=",
        "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
    ];

    private readonly string source;
    private readonly string? name;
    private readonly int[] lineStarts;
    private readonly List<Token> tokens = [];
    private int pos;
    private bool lineStarting = true;

    private Lexer(string source, string? name)
    {
        this.source = NormalizeSource(source);
        this.name = name;
        var starts = new List<int> { 0 };
        for (int i = 0; i < this.source.Length; i++)
        {
            if (this.source[i] == '\n')
                starts.Add(i + 1);
        }
        lineStarts = [.. starts];
    }

    public static List<Token> Tokenize(string source, string? name = null)
    {
        var lexer = new Lexer(source, name);
        lexer.Run();
        return lexer.tokens;
    }

    private static string NormalizeSource(string source)
    {
        string s = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        return s.EndsWith('\n') ? s[..^1] : s;
    }

    private (int Line, int Column) Position(int offset)
    {
        int index = Array.BinarySearch(lineStarts, offset);
        if (index < 0)
            index = ~index - 1;
        return (index + 1, offset - lineStarts[index] + 1);
    }

    private TemplateException Error(string message, int offset)
    {
        var (line, column) = Position(offset);
        return new TemplateException(message, line, column, name);
    }

    private void Add(TokenKind kind, string text, object? value, int offset)
    {
        var (line, column) = Position(offset);
        tokens.Add(new Token(kind, text, value, line, column));
    }

    private void Run()
    {
        while (pos < source.Length)
        {
            int tag = FindTagStart(pos);
            if (tag < 0)
            {
                Add(TokenKind.Data, source[pos..], null, pos);
                pos = source.Length;
                break;
            }
            char kind = source[tag + 1];
            int afterOpen = tag + 2;
            char sign = afterOpen < source.Length && source[afterOpen] is '-' or '+' ? source[afterOpen] : '\0';
            int rawEnd = kind == '%' ? MatchRawBegin(tag) : -1;
            EmitData(pos, tag, sign, lstripAllowed: kind != '{');
            if (rawEnd >= 0)
            {
                pos = rawEnd;
                lineStarting = source[pos - 1] == '\n';
                LexRaw(tag);
                continue;
            }
            pos = afterOpen + (sign != '\0' ? 1 : 0);
            lineStarting = false;
            if (kind == '#')
                LexComment(tag);
            else
                LexTag(tag, kind == '%');
        }
        Add(TokenKind.Eof, "", null, source.Length);
    }

    private int FindTagStart(int from)
    {
        int i = from;
        while ((i = source.IndexOf('{', i)) >= 0 && i + 1 < source.Length)
        {
            if (source[i + 1] is '{' or '%' or '#')
                return i;
            i++;
        }
        return -1;
    }

    /// <summary>Emits the text before a tag after applying "-" (strip all trailing whitespace) or lstrip_blocks.</summary>
    private void EmitData(int start, int end, char sign, bool lstripAllowed)
    {
        if (sign == '-')
            end = start + PyStr.RStripLength(source, start, end);
        else if (sign != '+' && lstripAllowed && end > start)
        {
            int lastNewline = source.LastIndexOf('\n', end - 1, end - start);
            int lineStart = lastNewline >= 0 ? lastNewline + 1 : start;
            if ((lastNewline >= 0 || lineStarting) && lineStart < end && AllSpace(lineStart, end))
                end = lineStart;
        }
        if (end > start)
            Add(TokenKind.Data, source[start..end], null, start);
    }

    private bool AllSpace(int start, int end)
    {
        for (int i = start; i < end; i++)
        {
            if (!PyStr.IsSpace(source[i]))
                return false;
        }
        return true;
    }

    private int SkipSpace(int i)
    {
        while (i < source.Length && PyStr.IsSpace(source[i]))
            i++;
        return i;
    }

    private bool At(int i, string text) => string.CompareOrdinal(source, i, text, 0, text.Length) == 0;

    /// <summary>Matches <c>{%[-+]? raw [-]?%}</c> at <paramref name="tag"/>; returns the offset after it or -1.</summary>
    private int MatchRawBegin(int tag)
    {
        int i = tag + 2;
        if (i < source.Length && source[i] is '-' or '+')
            i++;
        i = SkipSpace(i);
        if (!At(i, "raw"))
            return -1;
        i = SkipSpace(i + 3);
        if (At(i, "-%}"))
            return SkipSpace(i + 3);
        if (At(i, "%}"))
            return i + 2;
        return -1;
    }

    private void LexRaw(int rawTag)
    {
        int search = pos;
        while (true)
        {
            int tag = source.IndexOf("{%", search, StringComparison.Ordinal);
            if (tag < 0)
                throw Error("Missing end of raw directive", rawTag);
            int i = tag + 2;
            char sign = i < source.Length && source[i] is '-' or '+' ? source[i] : '\0';
            if (sign != '\0')
                i++;
            i = SkipSpace(i);
            if (At(i, "endraw"))
            {
                int j = SkipSpace(i + 6);
                int end = TagEnd(j, block: true);
                if (end >= 0)
                {
                    EmitData(pos, tag, sign, lstripAllowed: true);
                    pos = end;
                    lineStarting = source[end - 1] == '\n';
                    return;
                }
            }
            search = tag + 2;
        }
    }

    /// <summary>Matches a block/comment end at <paramref name="i"/> (<c>+%}</c>, <c>-%}</c> plus whitespace, or
    /// <c>%}</c> plus one newline for trim_blocks); returns the offset after it or -1.</summary>
    private int TagEnd(int i, bool block, char closer = '%')
    {
        string end = closer + "}";
        if (At(i, "+" + end))
            return i + 3;
        if (At(i, "-" + end))
            return SkipSpace(i + 3);
        if (At(i, end))
        {
            int after = i + 2;
            return block && after < source.Length && source[after] == '\n' ? after + 1 : after;
        }
        return -1;
    }

    private void LexComment(int tag)
    {
        for (int i = pos; i < source.Length; i++)
        {
            if (source[i] is '+' or '-' or '#')
            {
                int end = TagEnd(i, block: true, closer: '#');
                if (end >= 0)
                {
                    pos = end;
                    lineStarting = source[end - 1] == '\n';
                    return;
                }
            }
        }
        throw Error("Missing end of comment tag", tag);
    }

    private void LexTag(int tag, bool block)
    {
        Add(block ? TokenKind.BlockBegin : TokenKind.VariableBegin, block ? "{%" : "{{", null, tag);
        var balance = new Stack<char>();
        while (true)
        {
            if (pos >= source.Length)
                throw Error($"unexpected end of template, expected '{(block ? "end of statement block" : "end of print statement")}'", tag);
            if (balance.Count == 0)
            {
                int end = block ? TagEnd(pos, block: true) : VariableEnd(pos);
                if (end >= 0)
                {
                    Add(block ? TokenKind.BlockEnd : TokenKind.VariableEnd, block ? "%}" : "}}", null, pos);
                    pos = end;
                    lineStarting = source[end - 1] == '\n';
                    return;
                }
            }
            char c = source[pos];
            if (PyStr.IsSpace(c))
            {
                pos++;
                continue;
            }
            int start = pos;
            if (TryNumber(out var kind, out var value))
            {
                Add(kind, source[start..pos], value, start);
                continue;
            }
            if (IsNameStart(c))
            {
                while (pos < source.Length && IsNamePart(source[pos]))
                    pos++;
                Add(TokenKind.Name, source[start..pos], null, start);
                continue;
            }
            if (c is '\'' or '"')
            {
                Add(TokenKind.String, source[start..LexString()], UnescapeString(start), start);
                continue;
            }
            string? op = Operators.FirstOrDefault(o => At(pos, o));
            if (op is null)
                throw Error($"unexpected char {Py.Repr(c.ToString())} at {pos}", pos);
            switch (op)
            {
                case "(" or "[" or "{":
                    balance.Push(op switch { "(" => ')', "[" => ']', _ => '}' });
                    break;
                case ")" or "]" or "}":
                    if (balance.Count == 0)
                        throw Error($"unexpected '{op}'", pos);
                    char expected = balance.Pop();
                    if (expected != op[0])
                        throw Error($"unexpected '{op}', expected '{expected}'", pos);
                    break;
            }
            pos += op.Length;
            Add(TokenKind.Operator, op, null, start);
        }
    }

    private int VariableEnd(int i)
    {
        if (At(i, "-}}"))
            return SkipSpace(i + 3);
        return At(i, "}}") ? i + 2 : -1;
    }

    private static bool IsNameStart(char c) => c == '_' || char.IsLetter(c);

    private static bool IsNamePart(char c) => c == '_' || char.IsLetterOrDigit(c)
        || CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark
            or UnicodeCategory.ConnectorPunctuation;

    private int LexString()
    {
        char quote = source[pos];
        int i = pos + 1;
        while (i < source.Length)
        {
            char c = source[i];
            if (c == '\\')
            {
                i += 2;
                continue;
            }
            if (c == quote)
            {
                pos = i + 1;
                return pos;
            }
            i++;
        }
        throw Error("unexpected char " + Py.Repr(quote.ToString()) + $" at {pos}", pos);
    }

    /// <summary>Python's unicode-escape decoding of a string literal's body.</summary>
    private string UnescapeString(int start)
    {
        string body = source[(start + 1)..(pos - 1)];
        if (!body.Contains('\\'))
            return body;
        var sb = new StringBuilder(body.Length);
        for (int i = 0; i < body.Length; i++)
        {
            char c = body[i];
            if (c != '\\' || i + 1 >= body.Length)
            {
                sb.Append(c);
                continue;
            }
            char e = body[++i];
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case >= '0' and <= '7':
                    int octal = e - '0';
                    for (int k = 0; k < 2 && i + 1 < body.Length && body[i + 1] is >= '0' and <= '7'; k++)
                        octal = octal * 8 + (body[++i] - '0');
                    PyStr.AppendCodePoint(sb, octal);
                    break;
                case 'x' or 'u' or 'U':
                    int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    string hex = body.Substring(i + 1, Math.Min(digits, body.Length - i - 1));
                    if (hex.Length != digits || !int.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp))
                        throw Error($"truncated \\{(e == 'x' ? "xXX" : e == 'u' ? "uXXXX" : "UXXXXXXXX")} escape", start);
                    if (cp > 0x10FFFF)
                        throw Error("illegal Unicode character", start);
                    PyStr.AppendCodePoint(sb, cp);
                    i += digits;
                    break;
                case 'N':
                    throw Error("\\N{...} escapes are not supported", start);
                default:
                    sb.Append('\\').Append(e);
                    break;
            }
        }
        return sb.ToString();
    }

    private bool TryNumber(out TokenKind kind, out object? value)
    {
        kind = TokenKind.Integer;
        value = null;
        if (!char.IsAsciiDigit(source[pos]))
            return false;
        if (!(pos > 0 && source[pos - 1] == '.'))
        {
            int end = MatchFloat(pos);
            if (end > 0)
            {
                string text = source[pos..end].Replace("_", "", StringComparison.Ordinal);
                kind = TokenKind.Float;
                value = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
                pos = end;
                return true;
            }
        }
        int intEnd = MatchInteger(pos, out value);
        if (intEnd < 0)
            return false;
        pos = intEnd;
        return true;
    }

    private int Digits(int i)
    {
        // (\d+_)*\d+
        int start = i;
        while (true)
        {
            int run = i;
            while (i < source.Length && char.IsAsciiDigit(source[i]))
                i++;
            if (i == run)
                return run == start ? -1 : run - 1;
            if (i < source.Length && source[i] == '_' && i + 1 < source.Length && char.IsAsciiDigit(source[i + 1]))
            {
                i++;
                continue;
            }
            return i;
        }
    }

    private int MatchFloat(int i)
    {
        int mantissa = Digits(i);
        if (mantissa < 0)
            return -1;
        int j = mantissa;
        bool fraction = false;
        if (j < source.Length && source[j] == '.')
        {
            int f = Digits(j + 1);
            if (f > 0)
            {
                j = f;
                fraction = true;
            }
        }
        if (j < source.Length && source[j] is 'e' or 'E')
        {
            int k = j + 1;
            if (k < source.Length && source[k] is '+' or '-')
                k++;
            int exp = Digits(k);
            if (exp > 0)
                return exp;
        }
        return fraction ? j : -1;
    }

    private int MatchInteger(int i, out object? value)
    {
        value = null;
        if (source[i] == '0' && i + 1 < source.Length && source[i + 1] is 'b' or 'B' or 'o' or 'O' or 'x' or 'X')
        {
            char radix = char.ToLowerInvariant(source[i + 1]);
            int b = radix == 'b' ? 2 : radix == 'o' ? 8 : 16;
            int j = i + 2;
            BigInteger n = 0;
            int digitCount = 0;
            while (j < source.Length)
            {
                int k = j;
                if (source[k] == '_')
                    k++;
                if (k >= source.Length)
                    break;
                int d = HexValue(source[k]);
                if (d < 0 || d >= b)
                    break;
                n = n * b + d;
                digitCount++;
                j = k + 1;
            }
            if (digitCount > 0)
            {
                value = Py.Int(n);
                return j;
            }
            // "0" alone, followed by a name such as "b".
        }
        if (source[i] == '0')
        {
            int j = i + 1;
            while (j + 1 < source.Length && source[j] == '_' && source[j + 1] == '0' || j < source.Length && source[j] == '0')
                j += source[j] == '_' ? 2 : 1;
            value = 0L;
            return j;
        }
        int end = i + 1;
        while (end < source.Length)
        {
            if (char.IsAsciiDigit(source[end]))
                end++;
            else if (source[end] == '_' && end + 1 < source.Length && char.IsAsciiDigit(source[end + 1]))
                end += 2;
            else
                break;
        }
        value = Py.Int(BigInteger.Parse(source[i..end].Replace("_", "", StringComparison.Ordinal), CultureInfo.InvariantCulture));
        return end;
    }

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
