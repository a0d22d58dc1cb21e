using System.Collections;
using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Pipeline.Tokenizer.Templates;

/// <summary>Converts .NET and JSON values into template values, and template values into Python-style JSON.</summary>
internal static class TemplateValues
{
    /// <summary>Accepts null, bool, integers, floating point, strings, JsonNode, JsonElement, dictionaries with string
    /// keys and other enumerables; JSON numbers with a fraction or exponent become floats (as Python's json.loads does).</summary>
    public static object? From(object? value, int depth = 0)
    {
        if (depth > 512)
            throw new TemplateException("render argument is nested too deeply");
        switch (value)
        {
            case null:
                return null;
            case string or bool or long or double or BigInteger:
                return value;
            case int i:
                return (long)i;
            case short or byte or sbyte or ushort or uint:
                return Convert.ToInt64(value, CultureInfo.InvariantCulture);
            case ulong u:
                return Py.Int(u);
            case float f:
                return (double)f;
            case decimal m:
                return (double)m;
            case JsonNode node:
                return FromJson(node, depth);
            case JsonElement element:
                return FromJson(element, depth);
            case IDictionary dictionary:
                var dict = new PyDict();
                foreach (DictionaryEntry entry in dictionary)
                {
                    if (entry.Key is not string key)
                        throw new TemplateException($"render argument dictionary keys must be strings, got {entry.Key.GetType().Name}");
                    dict.Set(key, From(entry.Value, depth + 1));
                }
                return dict;
            case IEnumerable enumerable:
                var list = new List<object?>();
                foreach (var item in enumerable)
                    list.Add(From(item, depth + 1));
                return list;
            default:
                throw new TemplateException($"render argument of type {value.GetType().Name} cannot be used in a template");
        }
    }

    public static object? FromJson(JsonNode? node, int depth = 0)
    {
        if (depth > 512)
            throw new TemplateException("JSON value is nested too deeply");
        switch (node)
        {
            case null:
                return null;
            case JsonObject obj:
                var dict = new PyDict();
                foreach (var (key, child) in obj)
                    dict.Set(key, FromJson(child, depth + 1));
                return dict;
            case JsonArray array:
                var list = new List<object?>(array.Count);
                foreach (var child in array)
                    list.Add(FromJson(child, depth + 1));
                return list;
            case JsonValue v:
                if (v.TryGetValue(out JsonElement element))
                    return FromJson(element, depth);
                if (v.TryGetValue(out string? s))
                    return s;
                if (v.TryGetValue(out bool b))
                    return b;
                if (v.TryGetValue(out long l))
                    return l;
                if (v.TryGetValue(out int i))
                    return (long)i;
                if (v.TryGetValue(out double d))
                    return d;
                if (v.TryGetValue(out float f))
                    return (double)f;
                if (v.TryGetValue(out decimal m))
                    return (double)m;
                // Anything else: go through its JSON text.
                return FromJson(JsonDocument.Parse(v.ToJsonString()).RootElement.Clone(), depth);
            default:
                throw new TemplateException($"unsupported JSON node {node.GetType().Name}");
        }
    }

    public static object? FromJson(JsonElement element, int depth = 0)
    {
        if (depth > 512)
            throw new TemplateException("JSON value is nested too deeply");
        switch (element.ValueKind)
        {
            case JsonValueKind.Null:
            case JsonValueKind.Undefined:
                return null;
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            case JsonValueKind.String:
                return element.GetString();
            case JsonValueKind.Number:
                string raw = element.GetRawText();
                if (raw.AsSpan().IndexOfAny(".eE") < 0)
                {
                    if (element.TryGetInt64(out long l))
                        return l;
                    return Py.Int(BigInteger.Parse(raw, CultureInfo.InvariantCulture));
                }
                return element.GetDouble();
            case JsonValueKind.Array:
                var list = new List<object?>(element.GetArrayLength());
                foreach (var child in element.EnumerateArray())
                    list.Add(FromJson(child, depth + 1));
                return list;
            case JsonValueKind.Object:
                var dict = new PyDict();
                foreach (var property in element.EnumerateObject())
                    dict.Set(property.Name, FromJson(property.Value, depth + 1));
                return dict;
            default:
                throw new TemplateException($"unsupported JSON value kind {element.ValueKind}");
        }
    }

    /// <summary>Python's json.dumps(value, ensure_ascii, indent, separators, sort_keys), as transformers' tojson filter calls it.</summary>
    public static string Dumps(object? value, bool ensureAscii, string? indent, string itemSeparator, string keySeparator, bool sortKeys)
    {
        var sb = new StringBuilder();
        Write(sb, value, ensureAscii, indent, itemSeparator, keySeparator, sortKeys, 0);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? value, bool ascii, string? indent, string itemSep, string keySep, bool sortKeys, int level)
    {
        if (level > 512)
            throw new JinjaError("value is nested too deeply for tojson");
        switch (value)
        {
            case null:
                sb.Append("null");
                return;
            case bool b:
                sb.Append(b ? "true" : "false");
                return;
            case long or BigInteger:
                sb.Append(Py.Str(value));
                return;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d));
                return;
            case string s:
                WriteString(sb, s, ascii);
                return;
            case List<object?> or PyTuple:
                var items = value is PyTuple t ? (IReadOnlyList<object?>)t.Items : (List<object?>)value;
                if (items.Count == 0)
                {
                    sb.Append("[]");
                    return;
                }
                sb.Append('[');
                for (int i = 0; i < items.Count; i++)
                {
                    if (i > 0)
                        sb.Append(itemSep);
                    NewLine(sb, indent, level + 1);
                    Write(sb, items[i], ascii, indent, itemSep, keySep, sortKeys, level + 1);
                }
                NewLine(sb, indent, level);
                sb.Append(']');
                return;
            case PyDict dict:
                if (dict.Count == 0)
                {
                    sb.Append("{}");
                    return;
                }
                IEnumerable<KeyValuePair<object, object?>> entries = dict.Items;
                if (sortKeys)
                {
                    var sorted = dict.Items.ToList();
                    Sorting.StableSort(sorted, (a, b) => Py.Compare(a.Key, b.Key));
                    entries = sorted;
                }
                sb.Append('{');
                bool first = true;
                foreach (var (k, v) in entries)
                {
                    if (!first)
                        sb.Append(itemSep);
                    first = false;
                    NewLine(sb, indent, level + 1);
                    string key = k switch
                    {
                        string ks => ks,
                        bool kb => kb ? "true" : "false",
                        double kd => double.IsNaN(kd) ? "NaN" : double.IsInfinity(kd) ? (kd > 0 ? "Infinity" : "-Infinity") : Py.FloatRepr(kd),
                        long or BigInteger => Py.Str(k),
                        _ => throw new JinjaError($"keys must be str, int, float, bool or None, not {Py.TypeName(k)}"),
                    };
                    WriteString(sb, key, ascii);
                    sb.Append(keySep);
                    Write(sb, v, ascii, indent, itemSep, keySep, sortKeys, level + 1);
                }
                NewLine(sb, indent, level);
                sb.Append('}');
                return;
            default:
                throw new JinjaError($"Object of type {Py.TypeName(value)} is not JSON serializable");
        }
    }

    private static void NewLine(StringBuilder sb, string? indent, int level)
    {
        if (indent is null)
            return;
        sb.Append('\n');
        for (int i = 0; i < level; i++)
            sb.Append(indent);
    }

    private static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}

/// <summary>Stable sorting with a comparison that may throw (Python's sorted is stable; List.Sort is not, and
/// Array.Sort wraps exceptions from the comparison).</summary>
internal static class Sorting
{
    public static void StableSort<T>(List<T> items, Comparison<T> compare)
    {
        if (items.Count < 2)
            return;
        var buffer = new T[items.Count];
        var array = items.ToArray();
        MergeSort(array, buffer, 0, array.Length, compare);
        for (int i = 0; i < array.Length; i++)
            items[i] = array[i];
    }

    private static void MergeSort<T>(T[] a, T[] buffer, int lo, int hi, Comparison<T> compare)
    {
        if (hi - lo < 2)
            return;
        int mid = (lo + hi) / 2;
        MergeSort(a, buffer, lo, mid, compare);
        MergeSort(a, buffer, mid, hi, compare);
        int i = lo, j = mid, k = lo;
        while (i < mid && j < hi)
            buffer[k++] = compare(a[j], a[i]) < 0 ? a[j++] : a[i++];
        while (i < mid)
            buffer[k++] = a[i++];
        while (j < hi)
            buffer[k++] = a[j++];
        Array.Copy(buffer, lo, a, lo, hi - lo);
    }
}
