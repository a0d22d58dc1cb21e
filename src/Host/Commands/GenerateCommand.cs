using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Pipeline.Model;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.Sampling;
using Pipeline.Model.TestModels;
using Pipeline.Tokenizer.Chat;
using Pipeline.Tokenizer.Parsing;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline generate --prompt TEXT [--model DIR] [--json]`: one chat turn, streamed to stdout
/// (reasoning to stderr), or one JSON object with the answer, usage and timings.
/// Without --model the built-in tiny test model is used (generated on first use).
/// </summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo?>("--model") { Description = "checkpoint folder; default: the built-in tiny test model" };
        var prompt = new Option<string>("--prompt") { Description = "the user message", Required = true };
        var system = new Option<string?>("--system") { Description = "optional system message" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens to generate", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float?>("--temperature") { Description = "0 = greedy; default from generation_config.json" };
        var topK = new Option<int?>("--top-k") { Description = "0 = off; default from generation_config.json" };
        var topP = new Option<float?>("--top-p") { Description = "1 = off; default from generation_config.json" };
        var minP = new Option<float?>("--min-p") { Description = "0 = off" };
        var seed = new Option<ulong?>("--seed") { Description = "sampling seed (same seed, same tokens)" };
        var think = new Option<bool>("--think") { Description = "enable the model's thinking channel" };
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of streaming text" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };

        var command = new Command("generate", "Generate one answer to a prompt.")
        {
            model, prompt, system, maxTokens, temperature, topK, topP, minP, seed, think, json, threads,
        };
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            try
            {
                string directory = BuiltInModel.Resolve(parse.GetValue(model), error);
                using var engine = Engine.Load(directory, new EngineOptions { Threads = parse.GetValue(threads) });
                var tokenizer = File.Exists(Path.Combine(directory, "tokenizer.json"))
                    ? Pipeline.Tokenizer.Tokenizer.Load(directory)
                    : Pipeline.Tokenizer.Tokenizer.LoadGemma4();
                var template = ChatTemplate.ForModel(directory);

                var defaults = engine.Checkpoint.Generation;
                var sampling = SamplingOptions.FromGenerationDefaults(
                    parse.GetValue(temperature) ?? defaults.Temperature,
                    parse.GetValue(topK) ?? defaults.TopK,
                    parse.GetValue(topP) ?? defaults.TopP,
                    parse.GetValue(minP) ?? defaults.MinP) with
                {
                    Seed = parse.GetValue(seed),
                };

                var messages = new List<ChatMessage>();
                if (parse.GetValue(system) is { } systemText)
                    messages.Add(ChatMessage.System(systemText));
                messages.Add(ChatMessage.User(parse.GetValue(prompt)!));

                bool asJson = parse.GetValue(json);
                var generator = new OneShotGenerator(engine, tokenizer, template);
                var result = generator.Generate(
                    messages, sampling, parse.GetValue(maxTokens), parse.GetValue(think),
                    asJson ? null : e => Stream(e, output, error));
                if (asJson)
                    output.WriteLine(ToJson(result).ToJsonString());
                else
                    error.WriteLine(
                        $"\n[{result.FinishReason}] prompt {result.PromptTokens} tok, completion {result.CompletionTokens} tok, " +
                        $"ttft {result.TimeToFirstTokenMs:F1} ms, prefill {result.PrefillTokensPerSecond:F1} tok/s, decode {result.DecodeTokensPerSecond:F1} tok/s");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or CheckpointFormatException or IOException
                                          or NotSupportedException or TemplateException or InvalidChatRequestException)
            {
                error.WriteLine($"pipeline generate: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    private static void Stream(OutputEvent e, TextWriter output, TextWriter error)
    {
        switch (e)
        {
            case ContentDelta c:
                output.Write(c.Text);
                break;
            case ReasoningDelta r:
                error.Write(r.Text);
                break;
            case ToolCall t:
                output.Write($"\n[tool call {t.Name} {t.ArgumentsJson} ({t.Status})]\n");
                break;
        }
    }

    public static JsonObject ToJson(GenerationResult r) => new()
    {
        ["content"] = r.Content,
        ["reasoning_content"] = r.Reasoning,
        ["tool_calls"] = new JsonArray([.. r.ToolCalls.Select(t => (JsonNode)new JsonObject
        {
            ["name"] = t.Name,
            ["arguments"] = t.ArgumentsJson,
            ["status"] = t.Status.ToString(),
        })]),
        ["finish_reason"] = r.FinishReason,
        ["usage"] = new JsonObject
        {
            ["prompt_tokens"] = r.PromptTokens,
            ["completion_tokens"] = r.CompletionTokens,
        },
        ["timings"] = new JsonObject
        {
            ["ttft_ms"] = r.TimeToFirstTokenMs,
            ["prefill_tokens_per_second"] = r.PrefillTokensPerSecond,
            ["decode_tokens_per_second"] = r.DecodeTokensPerSecond,
        },
    };
}
