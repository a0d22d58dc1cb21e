namespace Pipeline.Tokenizer.Templates;

/// <summary>
/// A compiled Jinja2 template, rendered the way Hugging Face transformers renders chat templates
/// (sandboxed, trim_blocks and lstrip_blocks on, loop controls, tojson with ensure_ascii=False, raise_exception,
/// strftime_now). Compile once, render many times; rendering is thread-safe.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly Stmt[] body;
    private readonly TimeProvider clock;

    private JinjaTemplate(string source, string? name, Stmt[] body, TimeProvider clock)
    {
        Source = source;
        Name = name;
        this.body = body;
        this.clock = clock;
    }

    public string Source { get; }

    public string? Name { get; }

    /// <summary>Loop iterations plus macro calls one render may take before it is stopped (a runaway template must
    /// not hang the server); ten million is far above what chat templates need even for very long conversations.</summary>
    internal long StepBudget { get; init; } = 10_000_000;

    internal JinjaTemplate WithStepBudget(long budget) => new(Source, Name, body, clock) { StepBudget = budget };

    /// <summary>Parses <paramref name="source"/>; syntax errors, unknown tags and unknown filters/tests (outside
    /// if-blocks) throw <see cref="TemplateException"/> with the line and column.</summary>
    public static JinjaTemplate Compile(string source, string? name = null, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new JinjaTemplate(source, name, Parser.Parse(source, name), clock ?? TimeProvider.System);
    }

    /// <summary>Renders with the given variables. Values may be null, bool, numbers, strings, JsonNode/JsonElement,
    /// dictionaries with string keys and other enumerables.</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var globals = Globals.Create(clock);
        var context = new Scope(globals);
        foreach (var (key, value) in variables)
            context.Vars[key] = TemplateValues.From(value);
        return new Renderer(context, Name, StepBudget).Render(body);
    }
}
