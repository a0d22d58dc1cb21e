using System.Numerics;

namespace Pipeline.Tokenizer.Templates;

// Template values follow Python/Jinja2 semantics. The runtime representation is:
//   None -> null, bool, int -> long (BigInteger past 64 bits), float -> double, str -> string,
//   list -> List<object?>, tuple -> PyTuple, dict -> PyDict, plus Undefined, Namespace,
//   LoopContext and callables (macros, builtins, bound methods).

/// <summary>Jinja2's default Undefined: renders empty, is falsy, iterates as empty; most other uses fail.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Instance = new("value is undefined");

    public Undefined(string hint) => Hint = hint;

    /// <summary>The message of the error raised when the undefined value is used in a way that needs a value.</summary>
    public string Hint { get; }

    public static Undefined Missing(string name) => new($"'{name}' is undefined");

    public static Undefined NoAttribute(object? owner, object? name) =>
        new($"'{Py.TypeName(owner)} object' has no attribute {Py.Repr(name)}");

    public static Undefined NoItem(object? owner, object? key) =>
        new($"'{Py.TypeName(owner)} object' has no attribute {Py.Repr(key)}");

    public override string ToString() => "";
}

/// <summary>An immutable Python tuple.</summary>
internal sealed class PyTuple
{
    public static readonly PyTuple Empty = new([]);

    public PyTuple(object?[] items) => Items = items;

    public object?[] Items { get; }

    public int Count => Items.Length;

    public object? this[int index] => Items[index];

    public static PyTuple Of(params object?[] items) => new(items);
}

/// <summary>An insertion-ordered Python dict; keys compare with Python equality (1 == 1.0 == True).</summary>
internal sealed class PyDict
{
    private readonly OrderedDictionary<object, object?> entries = new(PyKeyComparer.Instance);

    public int Count => entries.Count;

    public IEnumerable<object> Keys => entries.Keys;

    public IEnumerable<object?> Values => entries.Values;

    public IEnumerable<KeyValuePair<object, object?>> Items => entries;

    public void Set(object? key, object? value) => entries[CheckKey(key)] = value;

    public bool TryGet(object? key, out object? value)
    {
        if (key is null || !PyKeyComparer.IsHashable(key))
        {
            value = null;
            return false;
        }
        return entries.TryGetValue(key, out value);
    }

    public bool ContainsKey(object? key) => key is not null && PyKeyComparer.IsHashable(key) && entries.ContainsKey(key);

    public PyDict Copy()
    {
        var copy = new PyDict();
        foreach (var (k, v) in entries)
            copy.entries[k] = v;
        return copy;
    }

    private static object CheckKey(object? key)
    {
        if (key is null)
            throw new JinjaError("dict keys of None are not supported");
        if (!PyKeyComparer.IsHashable(key))
            throw new JinjaError($"unhashable type: '{Py.TypeName(key)}'");
        return key;
    }
}

/// <summary>Python hashing/equality for dict keys: numbers by value, strings ordinal, tuples structurally.</summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public static bool IsHashable(object key) => key switch
    {
        string or long or double or bool or BigInteger => true,
        PyTuple t => t.Items.All(i => i is null || IsHashable(i)),
        _ => false,
    };

    public new bool Equals(object? x, object? y) => Py.Equal(x, y);

    public int GetHashCode(object obj) => obj switch
    {
        string s => string.GetHashCode(s, StringComparison.Ordinal),
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        BigInteger big => big.GetHashCode(),
        double d when Math.Floor(d) == d && d >= long.MinValue && d < 9.2233720368547758e18 => ((long)d).GetHashCode(),
        double d => d.GetHashCode(),
        PyTuple t => t.Items.Aggregate(17, (h, i) => h * 31 + (i is null ? 0 : GetHashCode(i))),
        _ => obj.GetHashCode(),
    };
}

/// <summary>The object made by <c>namespace(...)</c>: attributes that can be assigned from inner scopes.</summary>
internal sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>Positional and keyword arguments of a call.</summary>
internal sealed class CallArgs
{
    public static readonly CallArgs None = new([], []);

    public CallArgs(List<object?> positional, List<KeyValuePair<string, object?>> named)
    {
        Positional = positional;
        Named = named;
    }

    public List<object?> Positional { get; }

    public List<KeyValuePair<string, object?>> Named { get; }

    public static CallArgs Of(params object?[] positional) => new([.. positional], []);

    /// <summary>Binds arguments to a fixed signature the way Python does; missing optional parameters get their defaults.</summary>
    public object?[] Bind(string function, string[] names, object?[] defaults, int required)
    {
        if (Positional.Count > names.Length)
            throw new JinjaError($"{function}() takes at most {names.Length} argument(s) ({Positional.Count} given)");
        var values = new object?[names.Length];
        var set = new bool[names.Length];
        for (int i = 0; i < Positional.Count; i++)
        {
            values[i] = Positional[i];
            set[i] = true;
        }
        foreach (var (name, value) in Named)
        {
            int index = Array.IndexOf(names, name);
            if (index < 0)
                throw new JinjaError($"{function}() got an unexpected keyword argument '{name}'");
            if (set[index])
                throw new JinjaError($"{function}() got multiple values for argument '{name}'");
            values[index] = value;
            set[index] = true;
        }
        for (int i = 0; i < names.Length; i++)
        {
            if (set[i])
                continue;
            if (i < required)
                throw new JinjaError($"{function}() missing required argument '{names[i]}'");
            values[i] = defaults[i - required];
        }
        return values;
    }
}

/// <summary>Anything a template can call: macros, global functions, methods of values.</summary>
internal abstract class JinjaCallable
{
    public abstract string Name { get; }

    public abstract object? Invoke(Renderer renderer, CallArgs args);
}

/// <summary>A global function such as <c>range</c> or <c>namespace</c>.</summary>
internal sealed class BuiltinFunction(string name, Func<Renderer, CallArgs, object?> body) : JinjaCallable
{
    public override string Name => name;

    public override object? Invoke(Renderer renderer, CallArgs args) => body(renderer, args);
}

/// <summary>A method looked up on a value (<c>"a,b".split</c>, <c>d.items</c>); <c>Body</c> is null when Python has the
/// method but this interpreter does not, so calling it fails clearly instead of rendering something wrong.</summary>
internal sealed class BoundMethod(object? target, string name, Func<object?, CallArgs, object?>? body) : JinjaCallable
{
    public override string Name => name;

    public object? Target => target;

    public override object? Invoke(Renderer renderer, CallArgs args)
    {
        if (body is null)
            throw new JinjaError($"method {Py.TypeName(target)}.{name}() is not supported by this template engine");
        return body(target, args);
    }
}

/// <summary>An error raised while evaluating; the renderer turns it into a <see cref="TemplateException"/> with a position.
/// <see cref="RaisedByTemplate"/> marks errors from the template's own <c>raise_exception(msg)</c>.</summary>
internal sealed class JinjaError(string message, bool raisedByTemplate = false) : Exception(message)
{
    public bool RaisedByTemplate { get; } = raisedByTemplate;
}

/// <summary>A one-shot Python iterator (what map/select/unique/items/reverse return): always truthy, has no len(),
/// and is empty once consumed.</summary>
internal sealed class PyIterator(string typeName, IEnumerable<object?> source)
{
    private readonly IEnumerator<object?> enumerator = source.GetEnumerator();

    public string TypeName { get; } = typeName;

    public IEnumerable<object?> Drain()
    {
        while (enumerator.MoveNext())
            yield return enumerator.Current;
    }
}

/// <summary>dict.keys()/values()/items(): sized and iterable but not subscriptable.</summary>
internal sealed class PyView(string typeName, List<object?> items)
{
    public string TypeName { get; } = typeName;

    public List<object?> Items { get; } = items;
}

/// <summary>Python's range object.</summary>
internal sealed class PyRange
{
    public const long MaxLength = 100_000; // Jinja2's sandbox refuses larger ranges

    public PyRange(long start, long stop, long step)
    {
        if (step == 0)
            throw new JinjaError("range() arg 3 must not be zero");
        Start = start;
        Stop = stop;
        Step = step;
        long count = step > 0
            ? (stop > start ? (stop - start - 1) / step + 1 : 0)
            : (start > stop ? (start - stop - 1) / -step + 1 : 0);
        if (count > MaxLength)
            throw new JinjaError($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxLength}).");
        Count = (int)count;
    }

    public long Start { get; }

    public long Stop { get; }

    public long Step { get; }

    public int Count { get; }

    public long this[int index] => Start + index * Step;

    public IEnumerable<object?> Items()
    {
        for (int i = 0; i < Count; i++)
            yield return this[i];
    }
}
