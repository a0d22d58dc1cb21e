using System.CommandLine;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Pipeline.Tokenizer;

namespace Pipeline.Host.Commands;

/// <summary>The stdin -> stdout JSON-lines loop shared by the tokenizer debugging commands.</summary>
internal static class JsonLines
{
    public const string Contract =
        "One JSON object per input line, one per output line, flushed as it is written; blank lines are skipped. " +
        "A malformed line stops the run: its line number and the reason go to stderr and the exit code is 1. " +
        "Lone UTF-16 surrogates in \"text\" are encoded as U+FFFD.";

    public static Option<string?> ModelOption() => new("--model")
    {
        Description = "A model folder (its tokenizer.json or tokenizer.json.gz), or a tokenizer.json(.gz) file. " +
            "Default: the Gemma-4 tokenizer built into pipeline.",
    };

    /// <summary>Runs <paramref name="answer"/> on each input line; returns the process exit code.</summary>
    public static int Run(string? modelPath, Action<Pipeline.Tokenizer.Tokenizer, JsonElement, Utf8JsonWriter> answer)
    {
        Pipeline.Tokenizer.Tokenizer tokenizer;
        try
        {
            tokenizer = modelPath is null ? Pipeline.Tokenizer.Tokenizer.LoadGemma4() : Pipeline.Tokenizer.Tokenizer.Load(modelPath);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: cannot load the tokenizer: {e.Message}");
            return 1;
        }

        using var input = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false));
        using var stdout = Console.OpenStandardOutput();
        using var output = new Utf8JsonWriter(stdout, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        int number = 0;
        while (input.ReadLine() is { } line)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            try
            {
                using var document = JsonDocument.Parse(line);
                if (document.RootElement.ValueKind != JsonValueKind.Object)
                    throw new FormatException("expected a JSON object");
                answer(tokenizer, document.RootElement, output);
            }
            catch (Exception e) when (e is JsonException or FormatException or ArgumentException)
            {
                Console.Error.WriteLine($"error: line {number}: {e.Message.ReplaceLineEndings(" ")}");
                return 1;
            }
            output.Flush();
            output.Reset();
            stdout.WriteByte((byte)'\n');
            stdout.Flush();
        }
        return 0;
    }

    public static string RequiredString(JsonElement line, string name)
    {
        if (!line.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.String)
            throw new FormatException($"\"{name}\" must be a string");
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            // System.Text.Json refuses lone surrogate escapes ("\ud800"); keep them, the tokenizer
            // turns them into U+FFFD as the reference does.
            return UnescapeJsonString(value.GetRawText());
        }
    }

    public static bool OptionalBool(JsonElement line, string name)
    {
        if (!line.TryGetProperty(name, out var value))
            return false;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"\"{name}\" must be true or false, not {value.GetRawText()}"),
        };
    }

    public static void RejectOtherFields(JsonElement line, params string[] allowed)
    {
        foreach (var property in line.EnumerateObject())
        {
            if (!allowed.Contains(property.Name))
                throw new FormatException($"unknown field \"{property.Name}\" (expected {string.Join(", ", allowed.Select(a => $"\"{a}\""))})");
        }
    }

    /// <summary>Decodes a JSON string literal (quotes included) without requiring paired surrogates.</summary>
    private static string UnescapeJsonString(string literal)
    {
        var text = new StringBuilder(literal.Length);
        for (int i = 1; i < literal.Length - 1; i++)
        {
            char c = literal[i];
            if (c != '\\')
            {
                text.Append(c);
                continue;
            }
            c = literal[++i];
            text.Append(c switch
            {
                'b' => '\b',
                'f' => '\f',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => (char)Convert.ToUInt16(literal.Substring(i + 1, 4), 16),
                _ => c, // '"', '\\', '/'
            });
            if (c == 'u')
                i += 4;
        }
        return text.ToString();
    }
}
