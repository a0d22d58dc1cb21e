using System.Text.Json;
using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Tests.Templates;

public class JinjaTemplateTests
{
    private static string Render(string source, object? variables = null)
    {
        var dict = variables switch
        {
            null => new Dictionary<string, object?>(),
            Dictionary<string, object?> d => d,
            JsonObject o => o.ToDictionary(kv => kv.Key, kv => (object?)kv.Value),
            _ => throw new ArgumentException("variables"),
        };
        return JinjaTemplate.Compile(source, "t").Render(dict);
    }

    private static TemplateException Fails(string source, object? variables = null) =>
        Assert.Throws<TemplateException>(() => Render(source, variables));

    [Theory]
    [InlineData("line one\n{{ x | nosuchfilter }}", 2, 8, "No filter named 'nosuchfilter'")]
    [InlineData("a\n  b {% frobnicate %}", 2, 8, "unknown tag 'frobnicate'")]
    [InlineData("{% if x %}\n{% for y in z %}\n{% endif %}", 3, 4, "unknown tag 'endif'")]
    [InlineData("{{ 1 +\n  * 2 }}", 2, 3, "unexpected '*'")]
    [InlineData("ok\n\n   {{ x is nosuchtest }}", 3, 12, "No test named 'nosuchtest'")]
    [InlineData("{# open comment\n\nstill open", 1, 1, "Missing end of comment tag")]
    [InlineData("x {{ 'unterminated }}", 1, 6, "unexpected char")]
    [InlineData("{% include 'other.jinja' %}", 1, 4, "'include' tag is not supported")]
    [InlineData("{{ a.b.c.\n}}", 2, 1, "expected name or number")]
    public void SyntaxErrorsCarryLineAndColumn(string source, int line, int column, string reason)
    {
        var error = Assert.Throws<TemplateException>(() => JinjaTemplate.Compile(source, "t"));
        Assert.Equal(line, error.Line);
        Assert.Equal(column, error.Column);
        Assert.Contains(reason, error.Reason);
        Assert.Contains($"line {line}, column {column}", error.Message);
    }

    [Fact]
    public void UnclosedBlockNamesTheMissingTag()
    {
        var error = Assert.Throws<TemplateException>(() => JinjaTemplate.Compile("{% for x in y %}\n{% if x %}x", "t"));
        Assert.Contains("'endif'", error.Reason);
        Assert.Contains("'if'", error.Reason);
    }

    [Fact]
    public void RuntimeErrorsCarryThePositionOfTheFailingExpression()
    {
        var error = Fails("{% for i in [1, 0] %}\n  {{- 10 // i -}}\n{% endfor %}");
        Assert.Equal(2, error.Line);
        Assert.Contains("division", error.Reason);
        var undefinedAttribute = Fails("\n\n{{ user.name.first }}");
        Assert.Equal(3, undefinedAttribute.Line);
        Assert.Contains("'user' is undefined", undefinedAttribute.Reason);
    }

    [Fact]
    public void RaiseExceptionIsReportedAsTheTemplatesOwnError()
    {
        var error = Fails("{% if messages | length == 0 %}{{ raise_exception('No messages!') }}{% endif %}",
            new Dictionary<string, object?> { ["messages"] = Array.Empty<object>() });
        Assert.True(error.RaisedByTemplate);
        Assert.Equal("No messages!", error.Reason);
    }

    [Fact]
    public void UnknownFilterInsideIfFailsOnlyWhenEvaluated()
    {
        var template = JinjaTemplate.Compile("{% if use %}{{ x | nosuchfilter }}{% endif %}done", "t");
        Assert.Equal("done", template.Render(new Dictionary<string, object?> { ["use"] = false }));
        var error = Assert.Throws<TemplateException>(() => template.Render(new Dictionary<string, object?> { ["use"] = true, ["x"] = 1 }));
        Assert.Contains("nosuchfilter", error.Reason);
        Assert.Equal(1, error.Line);
    }

    [Fact]
    public void CompiledTemplateRendersManyTimesWithoutSharedState()
    {
        var template = JinjaTemplate.Compile("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}");
        var results = Enumerable.Range(1, 64).AsParallel().Select(i =>
            template.Render(new Dictionary<string, object?> { ["xs"] = Enumerable.Range(1, i).ToArray() })).ToArray();
        Assert.Equal(Enumerable.Range(1, 64).Select(i => (i * (i + 1) / 2).ToString()), results);
    }

    [Fact]
    public void JsonValuesKeepPythonNumberAndNullSemantics()
    {
        var vars = JsonNode.Parse("""{"i": 3, "f": 3.0, "e": 1e2, "big": 123456789012345678901234567890, "n": null, "s": "é", "o": {"b": 1, "a": [true, false]}}""")!.AsObject();
        Assert.Equal("3|3.0|100.0|123456789012345678901234567890|None|é|{'b': 1, 'a': [True, False]}",
            Render("{{ i }}|{{ f }}|{{ e }}|{{ big }}|{{ n }}|{{ s }}|{{ o }}", vars));
        using var doc = JsonDocument.Parse("""{"x": [1, 2.5, "three"]}""");
        Assert.Equal("[1, 2.5, 'three'] 3", Render("{{ x }} {{ x | length }}",
            new Dictionary<string, object?> { ["x"] = doc.RootElement.GetProperty("x") }));
        Assert.Equal("{\"b\": 1, \"a\": [true, false]}", Render("{{ o | tojson }}", vars));
    }

    [Fact]
    public void DotNetValuesAreConverted()
    {
        var vars = new Dictionary<string, object?>
        {
            ["list"] = new List<object?> { 1, 2.5f, "x", null, true },
            ["dict"] = new Dictionary<string, object?> { ["k"] = new[] { 1L, 2L } },
        };
        Assert.Equal("[1, 2.5, 'x', None, True] {'k': [1, 2]}", Render("{{ list }} {{ dict }}", vars));
        Assert.Throws<TemplateException>(() => Render("{{ x }}", new Dictionary<string, object?> { ["x"] = new object() }));
    }

    [Fact]
    public void WhitespaceControlFollowsTransformersSettings()
    {
        // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before a block tag goes.
        Assert.Equal("a\nb\n", Render("{% if true %}\na\n    {% endif %}\nb\n\n"));
        Assert.Equal("  x", Render("  {{ 'x' }}"));
        Assert.Equal("ab", Render("a   \n  {%- if true -%}  \n  b{% endif %}"));
        Assert.Equal("a\n  b", Render("a\n  {%+ if true %}b{% endif %}"));
        Assert.Equal("a\nb", Render("a{% if true +%}\nb{% endif %}\n\n"));
        Assert.Equal("x", Render("{#- comment -#}\n   x"));
    }

    [Fact]
    public void RunawayRecursionAndLoopsFailInsteadOfHanging()
    {
        var recursion = Fails("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        Assert.Contains("recursion", recursion.Reason);
        var loops = Assert.Throws<TemplateException>(() => JinjaTemplate
            .Compile("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
            .WithStepBudget(20_000)
            .Render(new Dictionary<string, object?>()));
        Assert.Contains("budget", loops.Reason);
        var nesting = Assert.Throws<TemplateException>(() => JinjaTemplate.Compile("{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}"));
        Assert.Contains("nested too deeply", nesting.Reason);
    }

    [Theory]
    [InlineData("{{ [1, 2, 3] | batch(2) | list }}", "batch")]
    [InlineData("{{ 'a b' | wordcount }}", "wordcount")]
    [InlineData("{{ x | pprint }}", "pprint")]
    [InlineData("{{ 'x' | safe is escaped }}", "escaped")]
    [InlineData("{{ 'abc'.translate({}) }}", "translate")]
    public void FeaturesOutsideTheSupportedSetFailWhenUsed(string source, string feature)
    {
        var template = JinjaTemplate.Compile("{% if false %}" + source + "{% endif %}ok", "t");
        Assert.Equal("ok", template.Render(new Dictionary<string, object?>()));
        var error = Fails(source, new Dictionary<string, object?> { ["x"] = 1 });
        Assert.Contains(feature, error.Reason);
    }

    [Fact]
    public void SandboxRefusesMutatingMethodsLikeTransformers()
    {
        // transformers renders with ImmutableSandboxedEnvironment: list.append and dict.update are unsafe there.
        Assert.Contains("unsafe", Fails("{% set xs = [] %}{{ xs.append(1) }}").Reason);
        Assert.Contains("unsafe", Fails("{% set d = {} %}{% set _ = d.update({'a': 1}) %}").Reason);
        Assert.Equal("", Render("{{ [].append }}"));
        Assert.Equal("", Render("{{ ''.__class__ }}"));
    }

    [Fact]
    public void StrftimeNowUsesTheGivenClock()
    {
        var clock = new FixedClock(new DateTimeOffset(2025, 3, 7, 14, 5, 9, TimeSpan.Zero));
        var template = JinjaTemplate.Compile("{{ strftime_now('%d %b %Y %H:%M:%S %A %B %j %p %%') }}", clock: clock);
        Assert.Equal("07 Mar 2025 14:05:09 Friday March 066 PM %", template.Render(new Dictionary<string, object?>()));
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }
}
