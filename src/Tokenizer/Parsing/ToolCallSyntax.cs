using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Pipeline.Tokenizer.Parsing;

/// <summary>
/// Gemma-4's tool-call text, <c>call:NAME{key:value,...}</c>, as its chat template writes it: strings are delimited
/// by <c>&lt;|"|&gt;</c> (no escapes inside), keys are bare or <c>&lt;|"|&gt;</c>-quoted, values may be nested objects,
/// arrays, numbers, true/false and null (also Python's True/False/None, which the template prints for those values).
/// </summary>
public static class ToolCallSyntax
{
    public const string StringDelimiter = "<|\"|>";

    /// <summary>Parses the text between the tool-call markers; never throws.</summary>
    public static ToolCall Parse(string raw)
    {
        string text = raw.Trim();
        if (!text.StartsWith("call:", StringComparison.Ordinal))
            return new ToolCall(null, null, ToolCallStatus.Invalid, raw);
        int brace = text.IndexOf('{');
        string name = (brace < 0 ? text[5..] : text[5..brace]).Trim();
        if (name.Length == 0)
            return new ToolCall(null, null, ToolCallStatus.MissingName, raw);
        if (name.Any(char.IsWhiteSpace) || name.Contains(StringDelimiter, StringComparison.Ordinal))
            return new ToolCall(null, null, ToolCallStatus.Invalid, raw);
        if (brace < 0)
            return new ToolCall(name, null, ToolCallStatus.ParseError, raw);
        var reader = new Reader(text, brace);
        try
        {
            var arguments = reader.ReadObject(0);
            reader.SkipSpace();
            if (!reader.AtEnd)
                return new ToolCall(name, null, ToolCallStatus.ParseError, raw);
            var json = new StringBuilder();
            WriteJson(json, arguments);
            return new ToolCall(name, json.ToString(), ToolCallStatus.Ok, raw);
        }
        catch (FormatException)
        {
            return new ToolCall(name, null, ToolCallStatus.ParseError, raw);
        }
    }

    private sealed class Reader(string text, int position)
    {
        private const int MaxDepth = 64;
        private int pos = position;

        public bool AtEnd => pos >= text.Length;

        public void SkipSpace()
        {
            while (pos < text.Length && char.IsWhiteSpace(text[pos]))
                pos++;
        }

        private bool At(string s) => string.CompareOrdinal(text, pos, s, 0, s.Length) == 0;

        private void Expect(char c)
        {
            SkipSpace();
            if (pos >= text.Length || text[pos] != c)
                throw new FormatException($"expected '{c}' at {pos}");
            pos++;
        }

        public JsonObject ReadObject(int depth)
        {
            if (depth > MaxDepth)
                throw new FormatException("nested too deeply");
            Expect('{');
            var obj = new JsonObject();
            SkipSpace();
            if (pos < text.Length && text[pos] == '}')
            {
                pos++;
                return obj;
            }
            while (true)
            {
                SkipSpace();
                string key = ReadKey();
                Expect(':');
                obj[key] = ReadValue(depth + 1);
                SkipSpace();
                if (pos < text.Length && text[pos] == ',')
                {
                    pos++;
                    continue;
                }
                Expect('}');
                return obj;
            }
        }

        private string ReadKey()
        {
            if (At(StringDelimiter))
                return ReadString();
            int start = pos;
            while (pos < text.Length && text[pos] is not (':' or ',' or '{' or '}' or '[' or ']') && !At(StringDelimiter))
                pos++;
            string key = text[start..pos].Trim();
            if (key.Length == 0 || key.Any(char.IsWhiteSpace))
                throw new FormatException($"bad key at {start}");
            return key;
        }

        private string ReadString()
        {
            pos += StringDelimiter.Length;
            int end = text.IndexOf(StringDelimiter, pos, StringComparison.Ordinal);
            if (end < 0)
                throw new FormatException("unterminated string");
            string value = text[pos..end];
            pos = end + StringDelimiter.Length;
            return value;
        }

        private JsonNode? ReadValue(int depth)
        {
            SkipSpace();
            if (pos >= text.Length)
                throw new FormatException("missing value");
            if (At(StringDelimiter))
                return JsonValue.Create(ReadString());
            char c = text[pos];
            if (c == '{')
                return ReadObject(depth);
            if (c == '[')
                return ReadArray(depth);
            int start = pos;
            while (pos < text.Length && text[pos] is not (',' or '}' or ']') && !char.IsWhiteSpace(text[pos]) && !At(StringDelimiter))
                pos++;
            string word = text[start..pos];
            switch (word)
            {
                case "true" or "True":
                    return JsonValue.Create(true);
                case "false" or "False":
                    return JsonValue.Create(false);
                case "null" or "None":
                    return null;
            }
            if (IsJsonNumber(word))
                return JsonNode.Parse(word);
            throw new FormatException($"bad value '{word}' at {start}");
        }

        private JsonArray ReadArray(int depth)
        {
            if (depth > MaxDepth)
                throw new FormatException("nested too deeply");
            Expect('[');
            var array = new JsonArray();
            SkipSpace();
            if (pos < text.Length && text[pos] == ']')
            {
                pos++;
                return array;
            }
            while (true)
            {
                array.Add(ReadValue(depth + 1));
                SkipSpace();
                if (pos < text.Length && text[pos] == ',')
                {
                    pos++;
                    continue;
                }
                Expect(']');
                return array;
            }
        }
    }

    /// <summary>Compact JSON that keeps non-ASCII text as is (System.Text.Json's encoders escape emoji and more).</summary>
    private static void WriteJson(StringBuilder sb, JsonNode? node)
    {
        switch (node)
        {
            case null:
                sb.Append("null");
                break;
            case JsonObject obj:
                sb.Append('{');
                bool first = true;
                foreach (var (key, value) in obj)
                {
                    if (!first)
                        sb.Append(',');
                    first = false;
                    WriteString(sb, key);
                    sb.Append(':');
                    WriteJson(sb, value);
                }
                sb.Append('}');
                break;
            case JsonArray array:
                sb.Append('[');
                for (int i = 0; i < array.Count; i++)
                {
                    if (i > 0)
                        sb.Append(',');
                    WriteJson(sb, array[i]);
                }
                sb.Append(']');
                break;
            case JsonValue value when value.TryGetValue(out string? text):
                WriteString(sb, text);
                break;
            default:
                sb.Append(node.ToJsonString()); // numbers keep their text; true/false
                break;
        }
    }

    private static void WriteString(StringBuilder sb, string text)
    {
        sb.Append('"');
        foreach (char c in text)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20)
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>JSON's number grammar: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?</summary>
    private static bool IsJsonNumber(string s)
    {
        int i = 0;
        if (i < s.Length && s[i] == '-')
            i++;
        if (i >= s.Length || !char.IsAsciiDigit(s[i]))
            return false;
        if (s[i] == '0')
            i++;
        else
        {
            while (i < s.Length && char.IsAsciiDigit(s[i]))
                i++;
        }
        if (i < s.Length && s[i] == '.')
        {
            i++;
            int digits = i;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
                i++;
            if (i == digits)
                return false;
        }
        if (i < s.Length && s[i] is 'e' or 'E')
        {
            i++;
            if (i < s.Length && s[i] is '+' or '-')
                i++;
            int digits = i;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
                i++;
            if (i == digits)
                return false;
        }
        return i == s.Length && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d);
    }
}
