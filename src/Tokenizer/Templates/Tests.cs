namespace Pipeline.Tokenizer.Templates;

internal delegate bool TestFunction(Renderer renderer, object? value, CallArgs args);

/// <summary>Jinja2's built-in tests (<c>x is defined</c>, <c>x is mapping</c>, ...), with Python's type rules.</summary>
internal static class Tests
{
    public static readonly Dictionary<string, TestFunction> Table = Build();

    private static Dictionary<string, TestFunction> Build()
    {
        var t = new Dictionary<string, TestFunction>(StringComparer.Ordinal)
        {
            ["defined"] = (_, v, a) => NoArgs(a, "defined", v is not Undefined),
            ["undefined"] = (_, v, a) => NoArgs(a, "undefined", v is Undefined),
            ["none"] = (_, v, a) => NoArgs(a, "none", v is null),
            ["boolean"] = (_, v, a) => NoArgs(a, "boolean", v is bool),
            ["true"] = (_, v, a) => NoArgs(a, "true", v is true),
            ["false"] = (_, v, a) => NoArgs(a, "false", v is false),
            ["integer"] = (_, v, a) => NoArgs(a, "integer", Py.IsInteger(v)),
            ["float"] = (_, v, a) => NoArgs(a, "float", v is double),
            ["number"] = (_, v, a) => NoArgs(a, "number", Py.IsNumber(v)),
            ["string"] = (_, v, a) => NoArgs(a, "string", v is string),
            ["mapping"] = (_, v, a) => NoArgs(a, "mapping", v is PyDict),
            // Python: len() works and __getitem__ exists (Jinja2's Undefined has both).
            ["sequence"] = (_, v, a) => NoArgs(a, "sequence", v is string or List<object?> or PyTuple or PyDict or PyRange or Undefined),
            ["iterable"] = (_, v, a) => NoArgs(a, "iterable",
                v is string or List<object?> or PyTuple or PyDict or PyRange or PyView or PyIterator or LoopContext or Undefined),
            // Jinja2's Undefined defines __call__ (to fail), so Python's callable() says yes.
            ["callable"] = (_, v, a) => NoArgs(a, "callable", v is JinjaCallable or Undefined),
            ["lower"] = (_, v, a) => NoArgs(a, "lower", CaseTest(Py.Str(v), lower: true)),
            ["upper"] = (_, v, a) => NoArgs(a, "upper", CaseTest(Py.Str(v), lower: false)),
            ["odd"] = (_, v, a) => NoArgs(a, "odd", Py.Equal(Py.Modulo(v, 2L), 1L)),
            ["even"] = (_, v, a) => NoArgs(a, "even", Py.Equal(Py.Modulo(v, 2L), 0L)),
            ["divisibleby"] = (_, v, a) => Py.Equal(Py.Modulo(v, One(a, "divisibleby", "num")), 0L),
            ["in"] = (_, v, a) => Py.Contains(One(a, "in", "seq"), v),
            ["sameas"] = (_, v, a) => SameAs(v, One(a, "sameas", "other")),
            ["filter"] = (_, v, a) => NoArgs(a, "filter", v is string s && Filters.Table.ContainsKey(s)),
            ["test"] = (_, v, a) => NoArgs(a, "test", v is string s && Table!.ContainsKey(s)),
            ["escaped"] = (_, _, _) => throw new JinjaError("the 'escaped' test is not supported by this template engine"),
        };
        Comparison(t, (x, y) => Py.Equal(x, y), "==", "eq", "equalto");
        Comparison(t, (x, y) => !Py.Equal(x, y), "!=", "ne");
        Comparison(t, (x, y) => Py.Compare(x, y, ">") > 0, ">", "gt", "greaterthan");
        Comparison(t, (x, y) => Py.Compare(x, y, ">=") >= 0, ">=", "ge");
        Comparison(t, (x, y) => Py.Compare(x, y, "<") < 0, "<", "lt", "lessthan");
        Comparison(t, (x, y) => Py.Compare(x, y, "<=") <= 0, "<=", "le");
        return t;
    }

    private static void Comparison(Dictionary<string, TestFunction> table, Func<object?, object?, bool> compare, params string[] names)
    {
        foreach (var name in names)
            table[name] = (_, v, a) => compare(v, One(a, name, "b"));
    }

    private static bool NoArgs(CallArgs a, string name, bool result)
    {
        if (a.Positional.Count > 0 || a.Named.Count > 0)
            throw new JinjaError($"test '{name}' takes no arguments");
        return result;
    }

    private static object? One(CallArgs a, string name, string parameter) => a.Bind(name, [parameter], [], 1)[0];

    private static bool CaseTest(string s, bool lower)
    {
        bool anyCased = false;
        foreach (int cp in PyStr.CodePoints(s))
        {
            if (lower ? PyStr.IsUpperCase(cp) : PyStr.IsLowerCase(cp))
                return false;
            if (System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp) == System.Globalization.UnicodeCategory.TitlecaseLetter)
                return false;
            anyCased |= PyStr.IsCased(cp);
        }
        return anyCased;
    }

    /// <summary>Python's <c>is</c>: None/True/False and small integers are singletons; other values by reference.</summary>
    private static bool SameAs(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y && x >= -5 && x <= 256,
        _ => ReferenceEquals(a, b),
    };
}
