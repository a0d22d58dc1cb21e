using System.Globalization;
using System.Numerics;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

internal delegate object? FilterFunction(Renderer renderer, object? value, CallArgs args);

/// <summary>Jinja2's built-in filters with transformers' tojson. Filters Jinja2 has but chat templates do not need
/// are registered as failing at render time, so a template that merely contains them still compiles.</summary>
internal static class Filters
{
    public static readonly Dictionary<string, FilterFunction> Table = Build();

    private static Dictionary<string, FilterFunction> Build()
    {
        var t = new Dictionary<string, FilterFunction>(StringComparer.Ordinal)
        {
            ["abs"] = (_, v, a) => NoArgs(a, "abs", v switch
            {
                long l when l != long.MinValue => Math.Abs(l),
                long l => Py.Int(BigInteger.Abs(l)),
                BigInteger big => Py.Int(BigInteger.Abs(big)),
                bool b => b ? 1L : 0L,
                double d => Math.Abs(d),
                _ => throw new JinjaError($"bad operand type for abs(): '{Py.TypeName(v)}'"),
            }),
            ["attr"] = (_, v, a) => Attr(v, Bind(a, "attr", ["name"], [], 1)[0]),
            ["capitalize"] = (_, v, a) => NoArgs(a, "capitalize", PyStr.Capitalize(Py.Str(v))),
            ["center"] = (_, v, a) =>
            {
                var p = Bind(a, "center", ["width"], [80L], 0);
                return PyStr.Center(Py.Str(v), Members.RequireInt(p[0], "center"), " ", 0);
            },
            ["count"] = (_, v, a) => NoArgs(a, "count", Py.Length(v)),
            ["length"] = (_, v, a) => NoArgs(a, "length", Py.Length(v)),
            ["default"] = Default,
            ["d"] = Default,
            ["dictsort"] = DictSort,
            ["escape"] = (_, v, a) => NoArgs(a, "escape", Escape(v)),
            ["e"] = (_, v, a) => NoArgs(a, "e", Escape(v)),
            ["forceescape"] = (_, v, a) => NoArgs(a, "forceescape", Escape(v)),
            ["first"] = (_, v, a) => NoArgs(a, "first", First(v)),
            ["last"] = (_, v, a) => NoArgs(a, "last", Last(v)),
            ["float"] = (_, v, a) =>
            {
                var p = Bind(a, "float", ["default"], [0.0], 0);
                FailIfUndefined(v);
                return ToFloat(v) ?? p[0];
            },
            ["int"] = (_, v, a) =>
            {
                var p = Bind(a, "int", ["default", "base"], [0L, 10L], 0);
                FailIfUndefined(v);
                return ToInt(v, Members.RequireInt(p[1], "int")) ?? p[0];
            },
            ["format"] = (_, v, a) =>
            {
                if (a.Positional.Count > 0 && a.Named.Count > 0)
                    throw new JinjaError("can't handle positional and keyword arguments at the same time");
                object? args = a.Named.Count > 0 ? Dict(a.Named) : new PyTuple([.. a.Positional]);
                return PyFormat.Percent(Py.Str(v), args);
            },
            ["indent"] = Indent,
            ["items"] = (_, v, a) => NoArgs(a, "items", v switch
            {
                Undefined => new PyIterator("generator", []),
                PyDict d => new PyIterator("generator", d.Items.Select(kv => (object?)PyTuple.Of(kv.Key, kv.Value)).ToList()),
                _ => throw new JinjaError("Can only get item pairs from a mapping."),
            }),
            ["join"] = (r, v, a) =>
            {
                var p = Bind(a, "join", ["d", "attribute"], ["", null], 0);
                var items = Py.Iterate(v);
                if (p[1] is not null)
                    items = items.Select(AttributeGetter(p[1], null, ignoreCase: false)).ToList();
                return string.Join(Py.Str(p[0]), items.Select(Py.Str));
            },
            ["list"] = (_, v, a) => NoArgs(a, "list", Py.ToList(v)),
            ["lower"] = (_, v, a) => NoArgs(a, "lower", PyStr.Lower(Py.Str(v))),
            ["upper"] = (_, v, a) => NoArgs(a, "upper", PyStr.Upper(Py.Str(v))),
            ["title"] = (_, v, a) => NoArgs(a, "title", Title(Py.Str(v))),
            ["map"] = Map,
            ["max"] = (_, v, a) => MinMax(v, a, "max", max: true),
            ["min"] = (_, v, a) => MinMax(v, a, "min", max: false),
            ["reject"] = (r, v, a) => SelectOrReject(r, v, a, attribute: false, select: false),
            ["rejectattr"] = (r, v, a) => SelectOrReject(r, v, a, attribute: true, select: false),
            ["select"] = (r, v, a) => SelectOrReject(r, v, a, attribute: false, select: true),
            ["selectattr"] = (r, v, a) => SelectOrReject(r, v, a, attribute: true, select: true),
            ["replace"] = (_, v, a) =>
            {
                var p = Bind(a, "replace", ["old", "new", "count"], [null], 2);
                long count = p[2] is null ? -1 : Members.RequireInt(p[2], "replace");
                return PyStr.Replace(Py.Str(v), Py.Str(p[0]), Py.Str(p[1]), count);
            },
            ["reverse"] = (_, v, a) => NoArgs(a, "reverse", v switch
            {
                string s => string.Concat(Enumerable.Reverse(PyStr.Chars(s)).Cast<string>()),
                List<object?> or PyTuple or PyRange or PyDict => new PyIterator(v is PyDict ? "dict_reversekeyiterator" : "reversed",
                    Enumerable.Reverse(Py.ToList(v)).ToList()),
                _ => ReverseList(v),
            }),
            ["round"] = Round,
            ["safe"] = (_, v, a) => NoArgs(a, "safe", Py.Str(v)),
            ["sort"] = Sort,
            ["string"] = (_, v, a) => NoArgs(a, "string", Py.Str(v)),
            ["sum"] = (_, v, a) =>
            {
                var p = Bind(a, "sum", ["attribute", "start"], [null, 0L], 0);
                var items = Py.Iterate(v);
                if (p[0] is not null)
                    items = items.Select(AttributeGetter(p[0], null, ignoreCase: false));
                object? total = p[1];
                foreach (var item in items)
                    total = Py.Add(total, item);
                return total;
            },
            ["tojson"] = ToJson,
            ["trim"] = (_, v, a) =>
            {
                var p = Bind(a, "trim", ["chars"], [null], 0);
                return PyStr.Strip(Py.Str(v), p[0] is null ? null : Py.Str(p[0]));
            },
            ["truncate"] = Truncate,
            ["unique"] = Unique,
        };
        foreach (var name in new[] { "batch", "filesizeformat", "groupby", "pprint", "random", "slice", "striptags", "urlencode",
                     "urlize", "wordcount", "wordwrap", "xmlattr" })
            t[name] = (_, _, _) => throw new JinjaError($"the '{name}' filter is not supported by this template engine");
        return t;
    }

    private static object?[] Bind(CallArgs a, string name, string[] names, object?[] defaults, int required) =>
        a.Bind(name, names, defaults, required);

    // Python's int()/float() and str concatenation raise on Jinja2's Undefined (filters like upper just see "").
    private static void FailIfUndefined(object? value)
    {
        if (value is Undefined u)
            throw new JinjaError(u.Hint);
    }

    private static object? NoArgs(CallArgs a, string name, object? result)
    {
        if (a.Positional.Count > 0 || a.Named.Count > 0)
            throw new JinjaError($"{name}() takes no arguments");
        return result;
    }

    private static PyDict Dict(IEnumerable<KeyValuePair<string, object?>> pairs)
    {
        var d = new PyDict();
        foreach (var (k, v) in pairs)
            d.Set(k, v);
        return d;
    }

    private static object? Default(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "default", ["default_value", "boolean"], ["", false], 0);
        return v is Undefined || (Py.IsTruthy(p[1]) && !Py.IsTruthy(v)) ? p[0] : v;
    }

    private static object? IgnoreCase(object? value) => value is string s ? PyStr.Lower(s) : value;

    private static object DictSort(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "dictsort", ["case_sensitive", "by", "reverse"], [false, "key", false], 0);
        int position = p[1] switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new JinjaError("You can only sort by either \"key\" or \"value\""),
        };
        if (v is Undefined u)
            throw new JinjaError(u.Hint);
        if (v is not PyDict dict)
            throw new JinjaError($"'{Py.TypeName(v)}' object has no attribute 'items'");
        bool caseSensitive = Py.IsTruthy(p[0]);
        var items = dict.Items.Select(kv => (object?)PyTuple.Of(kv.Key, kv.Value)).ToList();
        Func<object?, object?> key = item =>
        {
            var value = ((PyTuple)item!)[position];
            return caseSensitive ? value : IgnoreCase(value);
        };
        return SortBy(items, key, Py.IsTruthy(p[2]));
    }

    private static List<object?> SortBy(List<object?> items, Func<object?, object?> key, bool reverse)
    {
        var keyed = items.Select(i => (Key: key(i), Item: i)).ToList();
        Sorting.StableSort(keyed, reverse ? (x, y) => Py.Compare(y.Key, x.Key) : (x, y) => Py.Compare(x.Key, y.Key));
        return keyed.Select(k => k.Item).ToList();
    }

    private static object Sort(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "sort", ["reverse", "case_sensitive", "attribute"], [false, false, null], 0);
        bool ignoreCase = !Py.IsTruthy(p[1]);
        var getters = p[2] is string attrs
            ? attrs.Split(',').Select(part => AttributeGetter(part, null, ignoreCase)).ToList()
            : [AttributeGetter(p[2], null, ignoreCase)];
        return SortBy(Py.ToList(v), item => getters.Select(g => g(item)).ToList(), Py.IsTruthy(p[0]));
    }

    private static object Unique(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "unique", ["case_sensitive", "attribute"], [false, null], 0);
        var getter = AttributeGetter(p[1], null, ignoreCase: !Py.IsTruthy(p[0]));
        var seen = new HashSet<object>(PyKeyComparer.Instance);
        var result = new List<object?>();
        bool seenNone = false;
        foreach (var item in Py.Iterate(v))
        {
            var key = getter(item);
            if (key is null)
            {
                if (!seenNone)
                    result.Add(item);
                seenNone = true;
                continue;
            }
            if (!PyKeyComparer.IsHashable(key))
                throw new JinjaError($"unhashable type: '{Py.TypeName(key)}'");
            if (seen.Add(key))
                result.Add(item);
        }
        return new PyIterator("generator", result);
    }

    /// <summary>Jinja2's make_attrgetter: "a.b.0" walks items/attributes; undefined parts become <paramref name="fallback"/> when given.</summary>
    private static Func<object?, object?> AttributeGetter(object? attribute, object? fallback, bool ignoreCase)
    {
        object[] parts = attribute switch
        {
            null => [],
            string s => [.. s.Split('.').Select(part => part.Length > 0 && part.All(char.IsAsciiDigit)
                ? (object)long.Parse(part, CultureInfo.InvariantCulture)
                : part)],
            _ => [attribute],
        };
        return item =>
        {
            foreach (var part in parts)
            {
                item = Members.GetItem(item, part);
                if (fallback is not null && item is Undefined)
                    item = fallback;
            }
            return ignoreCase ? IgnoreCase(item) : item;
        };
    }

    private static object? Attr(object? target, object? name)
    {
        string attribute = Py.Str(name);
        if (target is PyDict or Namespace)
        {
            // attr() looks up attributes only, never items.
            var value = Members.GetAttribute(target, attribute);
            if (value is BoundMethod or Undefined)
                return value;
            return Undefined.NoAttribute(target, attribute);
        }
        return Members.GetAttribute(target, attribute);
    }

    private static string Escape(object? value)
    {
        var s = Py.Str(value);
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
        {
            sb.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&#34;",
                '\'' => "&#39;",
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }

    private static object? First(object? v)
    {
        foreach (var item in Py.Iterate(v))
            return item;
        return new Undefined("No first item, sequence was empty.");
    }

    private static object? Last(object? v)
    {
        if (v is PyIterator it)
            throw new JinjaError($"'{it.TypeName}' object is not reversible");
        var items = Py.ToList(v);
        return items.Count > 0 ? items[^1] : new Undefined("No last item, sequence was empty.");
    }

    private static object ReverseList(object? v)
    {
        var items = Py.ToList(v);
        items.Reverse();
        return items;
    }

    /// <summary>Python float(x), or null where Python raises TypeError/ValueError.</summary>
    private static double? ToFloat(object? v)
    {
        switch (v)
        {
            case double d:
                return d;
            case long or bool or BigInteger:
                return Py.ToDouble(v);
            case string s:
                return ParseFloat(s);
            default:
                return null;
        }
    }

    public static double? ParseFloat(string s)
    {
        string text = PyStr.Strip(s, null);
        string lower = text.ToLowerInvariant();
        string unsigned = lower.TrimStart('+', '-');
        bool negative = lower.StartsWith('-');
        if (lower.Length - unsigned.Length > 1)
            return null;
        if (unsigned is "inf" or "infinity")
            return negative ? double.NegativeInfinity : double.PositiveInfinity;
        if (unsigned == "nan")
            return double.NaN;
        if (!ValidUnderscores(text))
            return null;
        text = text.Replace("_", "", StringComparison.Ordinal);
        if (text.Length == 0 || text.Any(c => !(char.IsAsciiDigit(c) || c is '.' or 'e' or 'E' or '+' or '-')))
            return null;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : null;
    }

    private static bool ValidUnderscores(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '_' && (i == 0 || i == s.Length - 1 || !char.IsAsciiDigit(s[i - 1]) || !char.IsAsciiDigit(s[i + 1])))
                return false;
        }
        return true;
    }

    /// <summary>Jinja2's int filter: int(x) (int(str, base) for strings), falling back to int(float(x)); null means "use the default".</summary>
    private static object? ToInt(object? v, long numberBase)
    {
        switch (v)
        {
            case long or BigInteger:
                return v;
            case bool b:
                return b ? 1L : 0L;
            case double d:
                return TruncateFloat(d);
            case string s:
                var parsed = ParseInt(s, numberBase);
                if (parsed is not null)
                    return parsed;
                var f = ParseFloat(s);
                return f is null || !double.IsFinite(f.Value) ? null : TruncateFloat(f.Value);
            default:
                return null;
        }
    }

    private static object? TruncateFloat(double d)
    {
        if (double.IsNaN(d))
            return null;
        if (double.IsInfinity(d))
            throw new JinjaError("cannot convert float infinity to integer");
        return Py.Int(new BigInteger(Math.Truncate(d)));
    }

    private static object? ParseInt(string s, long numberBase)
    {
        string text = PyStr.Strip(s, null);
        bool negative = false;
        if (text.StartsWith('+') || text.StartsWith('-'))
        {
            negative = text[0] == '-';
            text = text[1..];
        }
        if (numberBase == 0 || numberBase == 16 || numberBase == 8 || numberBase == 2)
        {
            string lower = text.ToLowerInvariant();
            long prefixBase = lower.StartsWith("0x") ? 16 : lower.StartsWith("0o") ? 8 : lower.StartsWith("0b") ? 2 : 0;
            if (prefixBase != 0 && (numberBase == 0 || numberBase == prefixBase))
            {
                text = text[2..].TrimStart('_');
                numberBase = prefixBase;
            }
            else if (numberBase == 0)
                numberBase = 10;
        }
        if (numberBase < 2 || numberBase > 36 || text.Length == 0 || !ValidUnderscores(text))
            return null;
        BigInteger value = 0;
        foreach (char c in text)
        {
            if (c == '_')
                continue;
            int digit = c switch
            {
                >= '0' and <= '9' => c - '0',
                >= 'a' and <= 'z' => c - 'a' + 10,
                >= 'A' and <= 'Z' => c - 'A' + 10,
                _ => 99,
            };
            if (digit >= numberBase)
                return null;
            value = value * numberBase + digit;
        }
        return Py.Int(negative ? -value : value);
    }

    private static object Indent(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "indent", ["width", "first", "blank"], [4L, false, false], 0);
        FailIfUndefined(v);
        string indentation = p[0] is string s ? s : new string(' ', (int)Math.Max(0, Members.RequireInt(p[0], "indent")));
        string text = Py.Str(v) + "\n";
        var lines = PyStr.SplitLines(text);
        string result;
        if (Py.IsTruthy(p[2]))
            result = string.Join("\n" + indentation, lines);
        else
        {
            result = lines.Count > 0 ? lines[0] : "";
            if (lines.Count > 1)
                result += "\n" + string.Join("\n", lines.Skip(1).Select(line => line.Length > 0 ? indentation + line : line));
        }
        if (Py.IsTruthy(p[1]))
            result = indentation + result;
        return result;
    }

    private static object Map(Renderer r, object? v, CallArgs a)
    {
        Func<object?, object?> func;
        if (a.Positional.Count == 0 && a.Named.Any(kv => kv.Key == "attribute"))
        {
            object? attribute = null, fallback = null;
            foreach (var (k, value) in a.Named)
            {
                if (k == "attribute")
                    attribute = value;
                else if (k == "default")
                    fallback = value;
                else
                    throw new JinjaError($"Unexpected keyword argument '{k}'");
            }
            func = AttributeGetter(attribute, fallback, ignoreCase: false);
        }
        else
        {
            if (a.Positional.Count == 0)
                throw new JinjaError("map requires a filter argument");
            string filter = Py.Str(a.Positional[0]);
            var rest = new CallArgs([.. a.Positional.Skip(1)], a.Named);
            func = item => r.ApplyFilter(filter, item, rest);
        }
        return new PyIterator("generator", Py.Iterate(v).Select(func).ToList());
    }

    private static object SelectOrReject(Renderer r, object? v, CallArgs a, bool attribute, bool select)
    {
        Func<object?, object?> transform = x => x;
        int offset = 0;
        if (attribute)
        {
            if (a.Positional.Count == 0)
                throw new JinjaError("Missing parameter for attribute name");
            transform = AttributeGetter(a.Positional[0], null, ignoreCase: false);
            offset = 1;
        }
        Func<object?, bool> predicate;
        if (a.Positional.Count > offset)
        {
            string test = Py.Str(a.Positional[offset]);
            var rest = new CallArgs([.. a.Positional.Skip(offset + 1)], a.Named);
            predicate = x => r.ApplyTest(test, x, rest);
        }
        else
            predicate = Py.IsTruthy;
        return new PyIterator("generator", Py.Iterate(v).Where(item => predicate(transform(item)) == select).ToList());
    }

    private static object? MinMax(object? v, CallArgs a, string name, bool max)
    {
        var p = Bind(a, name, ["case_sensitive", "attribute"], [false, null], 0);
        var getter = AttributeGetter(p[1], null, ignoreCase: !Py.IsTruthy(p[0]));
        var items = Py.ToList(v);
        if (items.Count == 0)
            return new Undefined("No aggregated item, sequence was empty.");
        var best = items[0];
        var bestKey = getter(best);
        foreach (var item in items.Skip(1))
        {
            var key = getter(item);
            int c = Py.Compare(key, bestKey);
            if (max ? c > 0 : c < 0)
            {
                best = item;
                bestKey = key;
            }
        }
        return best;
    }

    private static object Round(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "round", ["precision", "method"], [0L, "common"], 0);
        long precision = Members.RequireInt(p[0], "round");
        string method = p[1] as string ?? "";
        if (method is not ("common" or "ceil" or "floor"))
            throw new JinjaError("method must be common, ceil or floor");
        if (!Py.IsNumber(v))
            throw new JinjaError($"type {Py.TypeName(v)} doesn't define __round__ method");
        if (method == "common")
        {
            if (v is double d)
                return PyFormat.Round(d, (int)Math.Clamp(precision, -400, 400));
            BigInteger n = v is bool b ? (b ? 1 : 0) : v is long l ? l : (BigInteger)v!;
            if (precision >= 0)
                return Py.Int(n);
            var unit = BigInteger.Pow(10, (int)Math.Min(-precision, 400));
            var q = BigInteger.DivRem(n, unit, out var rem);
            if (rem.Sign < 0)
            {
                q -= 1;
                rem += unit;
            }
            var twice = rem * 2;
            if (twice > unit || (twice == unit && !q.IsEven))
                q += 1;
            return Py.Int(q * unit);
        }
        double scale = Math.Pow(10, precision);
        double x = Py.ToDouble(v) * scale;
        return (method == "ceil" ? Math.Ceiling(x) : Math.Floor(x)) / scale;
    }

    private static object ToJson(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "tojson", ["ensure_ascii", "indent", "separators", "sort_keys"], [false, null, null, false], 0);
        string? indent = p[1] switch
        {
            null => null,
            string s => s,
            long or bool or BigInteger => new string(' ', (int)Math.Clamp(Members.RequireInt(p[1], "tojson"), 0, 1000)),
            _ => throw new JinjaError($"indent must be an int or a string, not {Py.TypeName(p[1])}"),
        };
        string itemSeparator = indent is null ? ", " : ",", keySeparator = ": ";
        if (p[2] is not null)
        {
            var separators = Py.ToList(p[2]);
            if (separators.Count != 2 || separators[0] is not string item || separators[1] is not string key)
                throw new JinjaError("separators must be a pair of strings");
            itemSeparator = item;
            keySeparator = key;
        }
        return TemplateValues.Dumps(v, Py.IsTruthy(p[0]), indent, itemSeparator, keySeparator, Py.IsTruthy(p[3]));
    }

    private static object Truncate(Renderer r, object? v, CallArgs a)
    {
        var p = Bind(a, "truncate", ["length", "killwords", "end", "leeway"], [255L, false, "...", 5L], 0);
        string s = Py.Str(v);
        long length = Members.RequireInt(p[0], "truncate");
        string end = Py.Str(p[2]);
        long leeway = Members.RequireInt(p[3], "truncate");
        long endLength = PyStr.Length(end);
        if (length < endLength)
            throw new JinjaError($"expected length >= {endLength}, got {length}");
        if (leeway < 0)
            throw new JinjaError($"expected leeway >= 0, got {leeway}");
        if (PyStr.Length(s) <= length + leeway)
            return s;
        string head = (string)Py.Slice(s, null, length - endLength, null);
        if (Py.IsTruthy(p[1]))
            return head + end;
        return (string)PyStr.RSplit(head, " ", 1)[0]! + end;
    }

    /// <summary>Jinja2's title filter: splits on runs of "-", whitespace and opening brackets, then capitalizes each piece.</summary>
    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        var cps = PyStr.CodePoints(s);
        int i = 0;
        while (i < cps.Count)
        {
            int start = i;
            bool separator = IsWordSeparator(cps[i]);
            while (i < cps.Count && IsWordSeparator(cps[i]) == separator)
                i++;
            var piece = PyStr.FromCodePoints(cps.GetRange(start, i - start));
            if (separator)
                sb.Append(piece);
            else
            {
                var first = PyStr.FromCodePoints(cps.GetRange(start, 1));
                sb.Append(PyStr.Upper(first)).Append(PyStr.Lower(PyStr.FromCodePoints(cps.GetRange(start + 1, i - start - 1))));
            }
        }
        return sb.ToString();

        static bool IsWordSeparator(int cp) => cp is '-' or '(' or '{' or '[' or '<' || PyStr.IsSpace(cp);
    }
}
