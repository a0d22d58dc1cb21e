using System.CommandLine;
using System.Text.Json;
using Pipeline.Tokenizer;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline tokenize [--model PATH]`: JSON lines on stdin, {"text": string, "add_special_tokens": bool
/// (default false)}, each answered on stdout with {"ids": [...]}.
/// </summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = JsonLines.ModelOption();
        var command = new Command("tokenize",
            "Encode JSON lines {\"text\",\"add_special_tokens\"} from stdin to {\"ids\"} on stdout. " + JsonLines.Contract)
        {
            model,
        };
        command.SetAction(parse => JsonLines.Run(parse.GetValue(model), (tokenizer, line, output) =>
        {
            string text = JsonLines.RequiredString(line, "text");
            bool addSpecial = JsonLines.OptionalBool(line, "add_special_tokens");
            JsonLines.RejectOtherFields(line, "text", "add_special_tokens");
            int[] ids = tokenizer.Encode(text, addSpecial);
            output.WriteStartObject();
            output.WriteStartArray("ids");
            foreach (int id in ids)
                output.WriteNumberValue(id);
            output.WriteEndArray();
            output.WriteEndObject();
        }));
        return command;
    }
}
