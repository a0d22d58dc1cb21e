using System.CommandLine;
using System.Text.Json;
using Pipeline.Tokenizer;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline detokenize [--model PATH]`: JSON lines on stdin, {"ids": [int], "skip_special_tokens": bool
/// (default false)}, each answered on stdout with {"text": string}.
/// </summary>
public static class DetokenizeCommand
{
    public static Command Create()
    {
        var model = JsonLines.ModelOption();
        var command = new Command("detokenize",
            "Decode JSON lines {\"ids\",\"skip_special_tokens\"} from stdin to {\"text\"} on stdout. " + JsonLines.Contract)
        {
            model,
        };
        command.SetAction(parse => JsonLines.Run(parse.GetValue(model), (tokenizer, line, output) =>
        {
            if (!line.TryGetProperty("ids", out var idsElement) || idsElement.ValueKind != JsonValueKind.Array)
                throw new FormatException("\"ids\" must be an array of token ids");
            var ids = new int[idsElement.GetArrayLength()];
            int k = 0;
            foreach (var item in idsElement.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[k]))
                    throw new FormatException($"\"ids\"[{k}] is {item.GetRawText()}, not an integer token id");
                k++;
            }
            bool skipSpecial = JsonLines.OptionalBool(line, "skip_special_tokens");
            JsonLines.RejectOtherFields(line, "ids", "skip_special_tokens");
            string text = tokenizer.Decode(ids, skipSpecial);
            output.WriteStartObject();
            output.WriteString("text", text);
            output.WriteEndObject();
        }));
        return command;
    }
}
