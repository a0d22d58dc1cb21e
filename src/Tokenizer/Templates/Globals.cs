using System.Globalization;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

/// <summary>Functions every template sees: Jinja2's range/dict/namespace/joiner plus transformers' raise_exception and strftime_now.</summary>
internal static class Globals
{
    public static Scope Create(TimeProvider clock)
    {
        var scope = new Scope(null);
        scope.Vars["range"] = new BuiltinFunction("range", (_, a) => Range(a));
        scope.Vars["dict"] = new BuiltinFunction("dict", (_, a) => MakeDict(a));
        scope.Vars["namespace"] = new BuiltinFunction("namespace", (_, a) => MakeNamespace(a));
        scope.Vars["joiner"] = new BuiltinFunction("joiner", (_, a) => MakeJoiner(a));
        scope.Vars["raise_exception"] = new BuiltinFunction("raise_exception", (_, a) =>
            throw new JinjaError(Py.Str(a.Bind("raise_exception", ["message"], [], 1)[0]), raisedByTemplate: true));
        scope.Vars["strftime_now"] = new BuiltinFunction("strftime_now", (_, a) =>
            StrFTime(clock.GetLocalNow().DateTime, Members.RequireString(a.Bind("strftime_now", ["format"], [], 1)[0], "strftime_now")));
        return scope;
    }

    private static PyRange Range(CallArgs a)
    {
        if (a.Named.Count > 0)
            throw new JinjaError("range() takes no keyword arguments");
        var p = a.Positional.Select(v => Members.RequireInt(v, "range")).ToArray();
        return p.Length switch
        {
            1 => new PyRange(0, p[0], 1),
            2 => new PyRange(p[0], p[1], 1),
            3 => new PyRange(p[0], p[1], p[2]),
            _ => throw new JinjaError($"range expected at most 3 arguments, got {p.Length}"),
        };
    }

    private static PyDict MakeDict(CallArgs a)
    {
        if (a.Positional.Count > 1)
            throw new JinjaError($"dict expected at most 1 argument, got {a.Positional.Count}");
        var dict = new PyDict();
        if (a.Positional.Count == 1)
            Fill(dict, a.Positional[0]);
        foreach (var (k, v) in a.Named)
            dict.Set(k, v);
        return dict;
    }

    private static void Fill(PyDict dict, object? source)
    {
        if (source is PyDict other)
        {
            foreach (var (k, v) in other.Items)
                dict.Set(k, v);
            return;
        }
        foreach (var pair in Py.Iterate(source))
        {
            var items = Py.ToList(pair);
            if (items.Count != 2)
                throw new JinjaError($"dictionary update sequence element has length {items.Count}; 2 is required");
            dict.Set(items[0], items[1]);
        }
    }

    private static Namespace MakeNamespace(CallArgs a)
    {
        var ns = new Namespace();
        var initial = new PyDict();
        foreach (var positional in a.Positional)
            Fill(initial, positional);
        foreach (var (k, v) in initial.Items)
            ns.Attributes[k as string ?? throw new JinjaError("namespace() keywords must be strings")] = v;
        foreach (var (k, v) in a.Named)
            ns.Attributes[k] = v;
        return ns;
    }

    private static BuiltinFunction MakeJoiner(CallArgs a)
    {
        string separator = Py.Str(a.Bind("joiner", ["sep"], [", "], 0)[0]);
        bool used = false;
        return new BuiltinFunction("joiner", (_, _) =>
        {
            if (!used)
            {
                used = true;
                return "";
            }
            return separator;
        });
    }

    /// <summary>Python's time.strftime for the directives chat templates use (dates in system prompts).</summary>
    public static string StrFTime(DateTime now, string format)
    {
        var culture = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                sb.Append(format[i]);
                continue;
            }
            char directive = format[++i];
            sb.Append(directive switch
            {
                'Y' => now.Year.ToString("0000", culture),
                'y' => (now.Year % 100).ToString("00", culture),
                'm' => now.Month.ToString("00", culture),
                'd' => now.Day.ToString("00", culture),
                'e' => now.Day.ToString(culture).PadLeft(2),
                'H' => now.Hour.ToString("00", culture),
                'I' => ((now.Hour + 11) % 12 + 1).ToString("00", culture),
                'M' => now.Minute.ToString("00", culture),
                'S' => now.Second.ToString("00", culture),
                'p' => now.Hour < 12 ? "AM" : "PM",
                'B' => culture.DateTimeFormat.GetMonthName(now.Month),
                'b' or 'h' => culture.DateTimeFormat.GetAbbreviatedMonthName(now.Month),
                'A' => culture.DateTimeFormat.GetDayName(now.DayOfWeek),
                'a' => culture.DateTimeFormat.GetAbbreviatedDayName(now.DayOfWeek),
                'j' => now.DayOfYear.ToString("000", culture),
                'w' => ((int)now.DayOfWeek).ToString(culture),
                'F' => now.ToString("yyyy-MM-dd", culture),
                'T' => now.ToString("HH:mm:ss", culture),
                '%' => "%",
                _ => throw new JinjaError($"strftime directive '%{directive}' is not supported"),
            });
        }
        return sb.ToString();
    }
}
