using System.Numerics;

namespace Pipeline.Tokenizer.Templates;

/// <summary>Attribute and item access with Jinja2's ImmutableSandboxedEnvironment rules: <c>a.b</c> tries the
/// attribute then the item, <c>a['b']</c> the item then the attribute; private names and methods that mutate
/// lists or dicts are refused (they come back undefined, as in the sandbox).</summary>
internal static class Members
{
    private delegate object? Method(object? self, CallArgs args);

    private static readonly string[] MutatingListMethods = ["append", "clear", "pop", "reverse", "insert", "sort", "extend", "remove"];
    private static readonly string[] MutatingDictMethods = ["clear", "pop", "popitem", "setdefault", "update"];

    // Python's methods of str; the ones without an implementation fail clearly when called.
    private static readonly string[] AllStringMethods =
    [
        "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format", "format_map",
        "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
        "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans", "partition",
        "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill",
    ];

    private static readonly Dictionary<string, Method> StringMethods = new()
    {
        ["startswith"] = (s, a) => AffixMatch((string)s!, a, "startswith", prefix: true),
        ["endswith"] = (s, a) => AffixMatch((string)s!, a, "endswith", prefix: false),
        ["strip"] = (s, a) => PyStr.Strip((string)s!, OptionalString(a, "strip")),
        ["lstrip"] = (s, a) => PyStr.Strip((string)s!, OptionalString(a, "lstrip"), right: false),
        ["rstrip"] = (s, a) => PyStr.Strip((string)s!, OptionalString(a, "rstrip"), left: false),
        ["split"] = (s, a) => SplitCall((string)s!, a, "split", PyStr.Split),
        ["rsplit"] = (s, a) => SplitCall((string)s!, a, "rsplit", PyStr.RSplit),
        ["splitlines"] = (s, a) =>
        {
            var v = a.Bind("splitlines", ["keepends"], [false], 0);
            return PyStr.SplitLines((string)s!, Py.IsTruthy(v[0])).Cast<object?>().ToList();
        },
        ["upper"] = (s, a) => NoArgs(a, "upper", PyStr.Upper((string)s!)),
        ["lower"] = (s, a) => NoArgs(a, "lower", PyStr.Lower((string)s!)),
        ["title"] = (s, a) => NoArgs(a, "title", PyStr.Title((string)s!)),
        ["capitalize"] = (s, a) => NoArgs(a, "capitalize", PyStr.Capitalize((string)s!)),
        ["swapcase"] = (s, a) => NoArgs(a, "swapcase", PyStr.SwapCase((string)s!)),
        ["replace"] = (s, a) =>
        {
            var v = a.Bind("replace", ["old", "new", "count"], [-1L], 2);
            return PyStr.Replace((string)s!, RequireString(v[0], "replace"), RequireString(v[1], "replace"), RequireInt(v[2], "replace"));
        },
        ["find"] = (s, a) => Find((string)s!, a, "find", last: false, raise: false),
        ["rfind"] = (s, a) => Find((string)s!, a, "rfind", last: true, raise: false),
        ["index"] = (s, a) => Find((string)s!, a, "index", last: false, raise: true),
        ["rindex"] = (s, a) => Find((string)s!, a, "rindex", last: true, raise: true),
        ["count"] = (s, a) =>
        {
            var v = a.Bind("count", ["sub"], [], 1);
            return PyStr.Count((string)s!, RequireString(v[0], "count"));
        },
        ["join"] = (s, a) =>
        {
            var v = a.Bind("join", ["iterable"], [], 1);
            return string.Join((string)s!, Py.Iterate(v[0]).Select(x => x as string
                ?? throw new JinjaError($"sequence item: expected str instance, {Py.TypeName(x)} found")));
        },
        ["format"] = (s, a) => PyFormat.Format((string)s!, a, GetAttribute),
        ["center"] = (s, a) => Pad((string)s!, a, "center", 0),
        ["ljust"] = (s, a) => Pad((string)s!, a, "ljust", -1),
        ["rjust"] = (s, a) => Pad((string)s!, a, "rjust", 1),
        ["zfill"] = (s, a) =>
        {
            var v = a.Bind("zfill", ["width"], [], 1);
            string text = (string)s!;
            long width = RequireInt(v[0], "zfill");
            long length = PyStr.Length(text);
            if (width <= length)
                return text;
            int sign = text.Length > 0 && text[0] is '+' or '-' ? 1 : 0;
            return text[..sign] + new string('0', (int)(width - length)) + text[sign..];
        },
        ["removeprefix"] = (s, a) =>
        {
            string prefix = RequireString(a.Bind("removeprefix", ["prefix"], [], 1)[0], "removeprefix");
            string text = (string)s!;
            return text.StartsWith(prefix, StringComparison.Ordinal) ? text[prefix.Length..] : text;
        },
        ["removesuffix"] = (s, a) =>
        {
            string suffix = RequireString(a.Bind("removesuffix", ["suffix"], [], 1)[0], "removesuffix");
            string text = (string)s!;
            return suffix.Length > 0 && text.EndsWith(suffix, StringComparison.Ordinal) ? text[..^suffix.Length] : text;
        },
        ["partition"] = (s, a) => Partition((string)s!, a, last: false),
        ["rpartition"] = (s, a) => Partition((string)s!, a, last: true),
        ["isalpha"] = (s, a) => NoArgs(a, "isalpha", PyStr.All((string)s!, PyStr.IsAlpha)),
        ["isdigit"] = (s, a) => NoArgs(a, "isdigit", PyStr.All((string)s!, PyStr.IsDigit)),
        ["isdecimal"] = (s, a) => NoArgs(a, "isdecimal", PyStr.All((string)s!, PyStr.IsDecimal)),
        ["isnumeric"] = (s, a) => NoArgs(a, "isnumeric", PyStr.All((string)s!, PyStr.IsNumeric)),
        ["isalnum"] = (s, a) => NoArgs(a, "isalnum", PyStr.All((string)s!, c => PyStr.IsAlpha(c) || PyStr.IsNumeric(c))),
        ["isspace"] = (s, a) => NoArgs(a, "isspace", PyStr.All((string)s!, PyStr.IsSpace)),
        ["isascii"] = (s, a) => NoArgs(a, "isascii", ((string)s!).All(c => c < 0x80)),
        ["islower"] = (s, a) => NoArgs(a, "islower", CaseTest((string)s!, lower: true)),
        ["isupper"] = (s, a) => NoArgs(a, "isupper", CaseTest((string)s!, lower: false)),
    };

    private static readonly Dictionary<string, Method> DictMethods = new()
    {
        ["items"] = (d, a) => NoArgs(a, "items", new PyView("dict_items", [.. ((PyDict)d!).Items.Select(kv => (object?)PyTuple.Of(kv.Key, kv.Value))])),
        ["keys"] = (d, a) => NoArgs(a, "keys", new PyView("dict_keys", [.. ((PyDict)d!).Keys])),
        ["values"] = (d, a) => NoArgs(a, "values", new PyView("dict_values", [.. ((PyDict)d!).Values])),
        ["get"] = (d, a) =>
        {
            var v = a.Bind("get", ["key", "default"], [null], 1);
            if (v[0] is not null && !PyKeyComparer.IsHashable(v[0]!))
                throw new JinjaError($"unhashable type: '{Py.TypeName(v[0])}'");
            return ((PyDict)d!).TryGet(v[0], out var value) ? value : v[1];
        },
        ["copy"] = (d, a) => NoArgs(a, "copy", ((PyDict)d!).Copy()),
    };

    private static readonly Dictionary<string, Method> ListMethods = new()
    {
        ["count"] = (l, a) =>
        {
            var v = a.Bind("count", ["value"], [], 1);
            return (long)Sequence(l).Count(x => Py.Equal(x, v[0]));
        },
        ["index"] = (l, a) =>
        {
            var v = a.Bind("index", ["value"], [], 1);
            var items = Sequence(l);
            for (int i = 0; i < items.Count; i++)
            {
                if (Py.Equal(items[i], v[0]))
                    return (long)i;
            }
            throw new JinjaError($"{Py.Repr(v[0])} is not in list");
        },
        ["copy"] = (l, a) => NoArgs(a, "copy", l is PyTuple ? l : new List<object?>(Sequence(l))),
    };

    private static IReadOnlyList<object?> Sequence(object? value) => value is PyTuple t ? t.Items : (List<object?>)value!;

    public static object? GetAttribute(object? target, string name)
    {
        if (target is Undefined u)
            throw new JinjaError(u.Hint);
        if (name.StartsWith('_'))
            return new Undefined($"access to attribute '{name}' of '{Py.TypeName(target)}' object is unsafe.");
        switch (target)
        {
            case PyDict dict:
                if (TryMethod(dict, name, out var dictMethod))
                    return dictMethod;
                return dict.TryGet(name, out var value) ? value : Undefined.NoAttribute(target, name);
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out var attr) ? attr : Undefined.NoAttribute(target, name);
            case LoopContext loop:
                return loop.Attribute(name);
            default:
                return TryMethod(target, name, out var method) ? method : Undefined.NoAttribute(target, name);
        }
    }

    public static object? GetItem(object? target, object? key)
    {
        if (target is Undefined u)
            throw new JinjaError(u.Hint);
        if (Py.TryIndex(target, key, out var value))
            return value;
        if (target is Namespace or LoopContext && key is string attributeName)
            return GetAttribute(target, attributeName);
        if (key is string name)
        {
            if (name.StartsWith('_'))
                return new Undefined($"access to attribute '{name}' of '{Py.TypeName(target)}' object is unsafe.");
            if (TryMethod(target, name, out var method))
                return method;
        }
        return Undefined.NoItem(target, key);
    }

    /// <summary>Python methods of the value's type; mutating list/dict methods are refused as in the immutable sandbox.</summary>
    private static bool TryMethod(object? target, string name, out object? method)
    {
        method = null;
        switch (target)
        {
            case string:
                if (StringMethods.TryGetValue(name, out var sm))
                    method = new BoundMethod(target, name, (self, args) => sm(self, args));
                else if (AllStringMethods.Contains(name))
                    method = new BoundMethod(target, name, null);
                break;
            case PyDict:
                if (DictMethods.TryGetValue(name, out var dm))
                    method = new BoundMethod(target, name, (self, args) => dm(self, args));
                else if (MutatingDictMethods.Contains(name))
                    method = Unsafe(target, name);
                else if (name == "fromkeys")
                    method = new BoundMethod(target, name, null);
                break;
            case List<object?> or PyTuple:
                if (ListMethods.TryGetValue(name, out var lm))
                    method = new BoundMethod(target, name, (self, args) => lm(self, args));
                else if (target is List<object?> && MutatingListMethods.Contains(name))
                    method = Unsafe(target, name);
                break;
            case long or BigInteger or bool or double:
                method = name switch
                {
                    "real" => target is double ? target : Py.Plus(target),
                    "imag" => target is double ? 0.0 : 0L,
                    "is_integer" when target is double d => new BoundMethod(target, name, (_, a) => NoArgs(a, "is_integer", Math.Floor(d) == d && double.IsFinite(d))),
                    "conjugate" or "bit_length" or "bit_count" or "as_integer_ratio" or "numerator" or "denominator" or "hex" or "to_bytes"
                        => new BoundMethod(target, name, null),
                    _ => null,
                };
                break;
        }
        return method is not null;
    }

    private static Undefined Unsafe(object? target, string name) =>
        new($"access to attribute '{name}' of '{Py.TypeName(target)}' object is unsafe (the sandbox forbids changing lists and dicts).");

    private static object? NoArgs(CallArgs a, string name, object? result)
    {
        if (a.Positional.Count > 0 || a.Named.Count > 0)
            throw new JinjaError($"{name}() takes no arguments");
        return result;
    }

    public static string RequireString(object? value, string function) => value as string
        ?? throw new JinjaError($"{function}() argument must be str, not {Py.TypeName(value)}");

    public static long RequireInt(object? value, string function) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        BigInteger big => big > long.MaxValue ? long.MaxValue : big < long.MinValue ? long.MinValue : (long)big,
        _ => throw new JinjaError($"'{Py.TypeName(value)}' object cannot be interpreted as an integer ({function})"),
    };

    private static string? OptionalString(CallArgs a, string function)
    {
        var v = a.Bind(function, ["chars"], [null], 0);
        return v[0] is null ? null : RequireString(v[0], function);
    }

    private static object SplitCall(string s, CallArgs a, string function, Func<string, string?, long, List<object?>> split)
    {
        var v = a.Bind(function, ["sep", "maxsplit"], [null, -1L], 0);
        return split(s, v[0] is null ? null : RequireString(v[0], function), RequireInt(v[1], function));
    }

    private static bool AffixMatch(string s, CallArgs a, string function, bool prefix)
    {
        var v = a.Bind(function, [prefix ? "prefix" : "suffix", "start", "end"], [null, null], 1);
        string text = s;
        if (v[1] is not null || v[2] is not null)
            text = (string)Py.Slice(s, v[1], v[2], null);
        IEnumerable<object?> candidates = v[0] is PyTuple t ? t.Items : [v[0]];
        foreach (var candidate in candidates)
        {
            if (candidate is not string affix)
                throw new JinjaError($"{function} first arg must be str or a tuple of str, not {Py.TypeName(candidate)}");
            if (prefix ? text.StartsWith(affix, StringComparison.Ordinal) : text.EndsWith(affix, StringComparison.Ordinal))
                return true;
        }
        return false;
    }

    private static object Find(string s, CallArgs a, string function, bool last, bool raise)
    {
        var v = a.Bind(function, ["sub", "start", "end"], [null, null], 1);
        string sub = RequireString(v[0], function);
        var chars = PyStr.Chars(s);
        long n = chars.Count;
        long start = v[1] is null ? 0 : RequireInt(v[1], function);
        long end = v[2] is null ? n : RequireInt(v[2], function);
        if (start < 0)
            start = Math.Max(0, start + n);
        if (end < 0)
            end = Math.Max(0, end + n);
        end = Math.Min(end, n);
        long found = -1;
        if (start <= end)
        {
            string window = string.Concat(chars.Skip((int)start).Take((int)(end - start)).Cast<string>());
            int at = last ? window.LastIndexOf(sub, StringComparison.Ordinal) : window.IndexOf(sub, StringComparison.Ordinal);
            if (at >= 0)
                found = start + PyStr.CodePointIndex(window, at);
        }
        if (found < 0 && raise)
            throw new JinjaError("substring not found");
        return found;
    }

    private static object Pad(string s, CallArgs a, string function, int align)
    {
        var v = a.Bind(function, ["width", "fillchar"], [" "], 1);
        string fill = RequireString(v[1], function);
        if (PyStr.Length(fill) != 1)
            throw new JinjaError("The fill character must be exactly one character long");
        return PyStr.Center(s, RequireInt(v[0], function), fill, align);
    }

    private static object Partition(string s, CallArgs a, bool last)
    {
        string sep = RequireString(a.Bind(last ? "rpartition" : "partition", ["sep"], [], 1)[0], "partition");
        if (sep.Length == 0)
            throw new JinjaError("empty separator");
        int at = last ? s.LastIndexOf(sep, StringComparison.Ordinal) : s.IndexOf(sep, StringComparison.Ordinal);
        if (at < 0)
            return last ? PyTuple.Of("", "", s) : PyTuple.Of(s, "", "");
        return PyTuple.Of(s[..at], sep, s[(at + sep.Length)..]);
    }

    private static bool CaseTest(string s, bool lower)
    {
        bool anyCased = false;
        foreach (int cp in PyStr.CodePoints(s))
        {
            if (lower ? PyStr.IsUpperCase(cp) : PyStr.IsLowerCase(cp))
                return false;
            if (System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp) == System.Globalization.UnicodeCategory.TitlecaseLetter)
                return false;
            if (PyStr.IsCased(cp))
                anyCased = true;
        }
        return anyCased;
    }
}
