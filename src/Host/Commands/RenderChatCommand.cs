using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Chat;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline render-chat [--model PATH]`: JSON lines on stdin, {"messages": [...], "tools"?: [...],
/// "add_generation_prompt"?: bool, "enable_thinking"?: bool, "reasoning_effort"?: string,
/// "chat_template_kwargs"?: {...}}, each answered on stdout with {"rendered": string, "ids": [...]}
/// (ids = the rendered text encoded without adding special tokens; the template writes BOS itself).
/// </summary>
public static class RenderChatCommand
{
    private static readonly string[] Fields =
        ["messages", "tools", "add_generation_prompt", "enable_thinking", "reasoning_effort", "chat_template_kwargs"];

    public static Command Create()
    {
        var model = JsonLines.ModelOption();
        model.Description += " The chat template is the folder's chat_template.jinja, chat_template.json or " +
            "tokenizer_config.json chat_template; without one, the built-in Gemma-4 template.";
        var command = new Command("render-chat",
            "Render chat requests from stdin with the model's chat template to {\"rendered\",\"ids\"} on stdout. " + JsonLines.Contract)
        {
            model,
        };
        command.SetAction(parse =>
        {
            string? path = parse.GetValue(model);
            ChatTemplate template;
            try
            {
                template = path is null ? ChatTemplate.Gemma4 : ChatTemplate.FromModelPath(path) ?? NoTemplate(path);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or TemplateException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"error: cannot load the chat template: {e.Message}");
                return 1;
            }
            return JsonLines.Run(path, (tokenizer, line, output) =>
            {
                JsonLines.RejectOtherFields(line, Fields);
                string rendered;
                try
                {
                    rendered = template.Render(ChatRequest.FromJson(JsonNode.Parse(line.GetRawText())));
                }
                catch (TemplateException e)
                {
                    throw new FormatException(e.Message, e); // names the template file, line and column
                }
                output.WriteStartObject();
                output.WriteString("rendered", rendered);
                output.WriteStartArray("ids");
                foreach (int id in tokenizer.Encode(rendered, addSpecialTokens: false))
                    output.WriteNumberValue(id);
                output.WriteEndArray();
                output.WriteEndObject();
            });
        });
        return command;
    }

    private static ChatTemplate NoTemplate(string path)
    {
        Console.Error.WriteLine($"note: no chat template found at '{path}'; using the built-in Gemma-4 template.");
        return ChatTemplate.Gemma4;
    }
}
