using System.Text.Json.Nodes;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Tests.Templates;

/// <summary>Random token soups and mutated real templates: compiling and rendering may fail, but only with
/// TemplateException (never a crash, another exception type, or a hang).</summary>
public class JinjaFuzzTests
{
    private static readonly string[] Atoms =
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "if", "for", "in", "else", "elif", "endif", "endfor", "set", "endset", "=", "x", "l",
        "d", "s", "n", "f", "people", "none", "1", "0", "-1", "2.5", "'a'", "\"b\"", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "~",
        "*", "**", "/", "//", "%", "<", ">", "==", "!=", "not", "and", "or", "is", "defined", "string", "mapping", "upper", "length",
        "tojson", "join", "items", "dictsort", "first", "range", "namespace", "loop", "index", "macro", "endmacro", "m", "call", "caller",
        "endcall", "filter", "endfilter", "raw", "endraw", "\n", " ", "abc", "0x1F", "1e400", "9999999999999999999999", "split",
        "replace", "format", "round", "int", "float", "sort", "map", "select", "selectattr", "unique", "reverse", "[::-1]", "[1:]",
        "('x',)", "{'k': 1}", "[1, [2]]", "'%s'", "'{}'", "break", "continue", "with", "endwith", "indent", "center", "truncate", "trim",
        "sum", "min", "max", "title", "e", "attr", "last", "ns.a", "get", "startswith", "\\", "'\\x'", "'\\u12'", "😀",
    ];

    [Fact]
    public void RandomTemplatesOnlyEverFailWithTemplateException()
    {
        var context = TemplateFixtures.ReadJsonLines(Path.Combine(TemplateFixtures.JinjaFixtures, "cases.jsonl")).First()["context"]!
            .AsObject().ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
        string[] templates = [.. Directory.GetFiles(Path.Combine(TemplateFixtures.JinjaFixtures, "templates"), "*.jinja")
            .Append(TemplateFixtures.GemmaTemplatePath).Select(File.ReadAllText)];
        var random = new Random(20250307);
        var failures = new List<string>();
        for (int i = 0; i < 4000; i++)
        {
            string source;
            if (i % 2 == 0)
            {
                source = string.Concat(Enumerable.Range(0, random.Next(1, 25)).Select(_ => Atoms[random.Next(Atoms.Length)] + (random.Next(3) == 0 ? " " : "")));
                if (random.Next(2) == 0)
                    source = "{{ " + source + " }}";
            }
            else
            {
                string t = templates[random.Next(templates.Length)];
                int a = random.Next(t.Length), b = Math.Min(t.Length, a + random.Next(1, 40));
                source = random.Next(3) switch
                {
                    0 => t.Remove(a, b - a),
                    1 => t.Insert(a, Atoms[random.Next(Atoms.Length)]),
                    _ => t[..a] + t[b..] + t[a..b],
                };
            }
            try
            {
                JinjaTemplate.Compile(source).WithStepBudget(100_000).Render(context);
            }
            catch (TemplateException)
            {
            }
            catch (Exception e)
            {
                failures.Add($"{e.GetType().Name}: {e.Message} in {source}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(5)));
    }
}
