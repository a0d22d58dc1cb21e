using System.Text.Json;
using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Chat;

/// <summary>
/// A model's chat template: turns a <see cref="ChatRequest"/> into prompt text exactly as transformers'
/// <c>apply_chat_template(..., tokenize=False)</c> does. The text starts with the template's own BOS, so encode it
/// without adding special tokens.
/// </summary>
public sealed class ChatTemplate
{
    private static readonly Lazy<ChatTemplate> EmbeddedGemma4 = new(() =>
        new ChatTemplate(new() { ["default"] = JinjaTemplate.Compile(GemmaTokenizerData.ReadChatTemplate(), "chat_template.jinja") },
            DefaultSpecialTokens(), "embedded Gemma-4 chat_template.jinja"));

    private readonly Dictionary<string, JinjaTemplate> templates;
    private readonly Dictionary<string, string> specialTokens;

    private ChatTemplate(Dictionary<string, JinjaTemplate> templates, Dictionary<string, string> specialTokens, string origin)
    {
        this.templates = templates;
        this.specialTokens = specialTokens;
        Origin = origin;
    }

    /// <summary>Where the template came from (a file path or "embedded ...").</summary>
    public string Origin { get; }

    /// <summary>The default template's source text.</summary>
    public string Source => Default.Source;

    /// <summary>Special tokens passed to the template (bos_token, eos_token, and unk/pad when the config names them).</summary>
    public IReadOnlyDictionary<string, string> SpecialTokens => specialTokens;

    private JinjaTemplate Default => templates.TryGetValue("default", out var t) ? t : templates.Values.First();

    /// <summary>The Gemma-4-31B-it template shipped in this assembly, with bos_token "&lt;bos&gt;" and eos_token "&lt;eos&gt;".</summary>
    public static ChatTemplate Gemma4 => EmbeddedGemma4.Value;

    public static ChatTemplate FromSource(string source, string? name = null, IReadOnlyDictionary<string, string>? specialTokens = null) =>
        new(new() { ["default"] = JinjaTemplate.Compile(source, name) },
            specialTokens is null ? DefaultSpecialTokens() : new Dictionary<string, string>(specialTokens), name ?? "template source");

    /// <summary>
    /// The template of a model folder, looked up the way transformers does: chat_template.jinja, then
    /// chat_template.json, then tokenizer_config.json's chat_template (a string, or a list of named templates).
    /// Special tokens come from tokenizer_config.json when present. <paramref name="path"/> may also be a file in the
    /// folder (e.g. tokenizer.json). Returns null when the folder has no template.
    /// </summary>
    public static ChatTemplate? FromModelPath(string path)
    {
        string directory = Directory.Exists(path) ? path
            : File.Exists(path) ? Path.GetDirectoryName(Path.GetFullPath(path))!
            : throw new FileNotFoundException($"Model path '{path}' does not exist.", path);
        string configPath = Path.Combine(directory, "tokenizer_config.json");
        JsonObject? config = File.Exists(configPath) ? ReadJsonObject(configPath) : null;
        var tokens = config is null ? DefaultSpecialTokens() : SpecialTokensFrom(config, configPath);

        string jinjaPath = Path.Combine(directory, "chat_template.jinja");
        if (File.Exists(jinjaPath))
            return new ChatTemplate(new() { ["default"] = JinjaTemplate.Compile(File.ReadAllText(jinjaPath), jinjaPath) }, tokens, jinjaPath);
        string jsonPath = Path.Combine(directory, "chat_template.json");
        if (File.Exists(jsonPath))
            return new ChatTemplate(ReadTemplates(ReadJsonObject(jsonPath)["chat_template"], jsonPath), tokens, jsonPath);
        if (config?["chat_template"] is JsonNode fromConfig)
            return new ChatTemplate(ReadTemplates(fromConfig, configPath), tokens, configPath);
        return null;
    }

    /// <summary><see cref="FromModelPath"/>, or the embedded Gemma-4 template when the folder has none.</summary>
    public static ChatTemplate ForModel(string? path) => path is null ? Gemma4 : FromModelPath(path) ?? Gemma4;

    /// <summary>Renders the prompt. Template errors (including the template's own raise_exception) throw
    /// <see cref="TemplateException"/>.</summary>
    public string Render(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var variables = new Dictionary<string, object?>();
        foreach (var (name, value) in specialTokens)
            variables[name] = value;
        if (request.TemplateVariables is not null)
        {
            foreach (var (name, value) in request.TemplateVariables)
                variables[name] = value;
        }
        variables["messages"] = new JsonArray([.. request.Messages.Select(m => (JsonNode)m.ToJson())]);
        if (request.Tools is not null)
            variables["tools"] = new JsonArray([.. request.Tools.Select(t => t.DeepClone())]);
        variables["add_generation_prompt"] = request.AddGenerationPrompt;
        variables["enable_thinking"] = request.ThinkingEnabled;
        if (request.ReasoningEffort is { } effort)
            variables["reasoning_effort"] = effort.ToString().ToLowerInvariant();
        return Select(request).Render(variables);
    }

    // transformers: with tools, a template named "tool_use" wins; otherwise "default".
    private JinjaTemplate Select(ChatRequest request) =>
        request.Tools is not null && templates.TryGetValue("tool_use", out var toolUse) ? toolUse : Default;

    private static Dictionary<string, string> DefaultSpecialTokens() => new() { ["bos_token"] = "<bos>", ["eos_token"] = "<eos>" };

    private static Dictionary<string, string> SpecialTokensFrom(JsonObject config, string path)
    {
        var tokens = new Dictionary<string, string>();
        foreach (var name in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
        {
            switch (config[name])
            {
                case null:
                    break;
                case JsonValue v when v.TryGetValue(out string? text):
                    tokens[name] = text;
                    break;
                case JsonObject added when added["content"] is JsonValue c && c.TryGetValue(out string? content):
                    tokens[name] = content;
                    break;
                default:
                    throw new InvalidDataException($"{path}: '{name}' must be a string or an object with a string 'content'.");
            }
        }
        return tokens;
    }

    private static Dictionary<string, JinjaTemplate> ReadTemplates(JsonNode? node, string path)
    {
        switch (node)
        {
            case JsonValue v when v.TryGetValue(out string? source):
                return new() { ["default"] = JinjaTemplate.Compile(source, path) };
            case JsonArray named:
                var result = new Dictionary<string, JinjaTemplate>();
                foreach (var item in named)
                {
                    if (item is not JsonObject entry || entry["name"] is not JsonValue n || !n.TryGetValue(out string? name)
                        || entry["template"] is not JsonValue t || !t.TryGetValue(out string? template))
                        throw new InvalidDataException($"{path}: chat_template list entries must be {{\"name\": string, \"template\": string}}.");
                    result[name] = JinjaTemplate.Compile(template, $"{path} ({name})");
                }
                if (result.Count == 0)
                    throw new InvalidDataException($"{path}: chat_template is an empty list.");
                return result;
            default:
                throw new InvalidDataException($"{path}: chat_template must be a string or a list of named templates.");
        }
    }

    private static JsonObject ReadJsonObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new InvalidDataException($"{path}: expected a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON ({e.Message}).", e);
        }
    }
}
