using System.Globalization;
using System.Numerics;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

/// <summary>Python semantics for template values: truthiness, str/repr, equality, ordering, arithmetic.</summary>
internal static class Py
{
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long or BigInteger => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyTuple => "tuple",
        PyDict => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopContext => "LoopContext",
        PyIterator it => it.TypeName,
        PyView view => view.TypeName,
        PyRange => "range",
        Macro => "Macro",
        BoundMethod => "builtin_function_or_method",
        JinjaCallable => "function",
        _ => value.GetType().Name,
    };

    public static bool IsTruthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        BigInteger big => !big.IsZero,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        PyTuple t => t.Count > 0,
        PyDict d => d.Count > 0,
        PyView view => view.Items.Count > 0,
        PyRange range => range.Count > 0,
        Undefined => false,
        _ => true,
    };

    public static bool IsNumber(object? value) => value is long or double or bool or BigInteger;

    public static bool IsInteger(object? value) => value is long or BigInteger;

    // ---------------------------------------------------------------- str() and repr()

    public static string Str(object? value) => value switch
    {
        string s => s,
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        BigInteger big => big.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        _ => Repr(value),
    };

    public static string Repr(object? value)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, value, 0);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? value, int depth)
    {
        if (depth > 200)
            throw new JinjaError("maximum nesting depth exceeded while converting a value to a string");
        switch (value)
        {
            case string s:
                AppendStringRepr(sb, s);
                break;
            case List<object?> list:
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0)
                        sb.Append(", ");
                    AppendRepr(sb, list[i], depth + 1);
                }
                sb.Append(']');
                break;
            case PyTuple t:
                sb.Append('(');
                for (int i = 0; i < t.Count; i++)
                {
                    if (i > 0)
                        sb.Append(", ");
                    AppendRepr(sb, t[i], depth + 1);
                }
                sb.Append(t.Count == 1 ? ",)" : ")");
                break;
            case PyDict d:
                sb.Append('{');
                bool first = true;
                foreach (var (k, v) in d.Items)
                {
                    if (!first)
                        sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k, depth + 1);
                    sb.Append(": ");
                    AppendRepr(sb, v, depth + 1);
                }
                sb.Append('}');
                break;
            case Undefined:
                sb.Append("Undefined");
                break;
            case Namespace ns:
                sb.Append("<Namespace {");
                bool firstAttr = true;
                foreach (var (k, v) in ns.Attributes)
                {
                    if (!firstAttr)
                        sb.Append(", ");
                    firstAttr = false;
                    AppendStringRepr(sb, k);
                    sb.Append(": ");
                    AppendRepr(sb, v, depth + 1);
                }
                sb.Append("}>");
                break;
            case Macro m:
                sb.Append("<Macro '").Append(m.Name).Append("'>");
                break;
            case LoopContext loop:
                sb.Append("<LoopContext ").Append(loop.Index0 + 1).Append('/').Append(loop.Length).Append('>');
                break;
            case PyRange range:
                sb.Append("range(").Append(range.Start).Append(", ").Append(range.Stop);
                if (range.Step != 1)
                    sb.Append(", ").Append(range.Step);
                sb.Append(')');
                break;
            case PyView view:
                sb.Append(view.TypeName).Append('(');
                AppendRepr(sb, view.Items, depth + 1);
                sb.Append(')');
                break;
            case PyIterator or BoundMethod or BuiltinFunction:
                // Python prints these with a memory address; refuse rather than render something different.
                throw new JinjaError($"cannot convert a {TypeName(value)} object to a string (did you forget '| list' or '()'?)");
            case null or bool or long or BigInteger or double:
                sb.Append(Str(value));
                break;
            default:
                throw new JinjaError($"cannot convert a {TypeName(value)} object to a string");
        }
    }

    /// <summary>Python's repr of a str: single quotes unless the text has ' and no ", escapes for non-printables.</summary>
    public static void AppendStringRepr(StringBuilder sb, string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        for (int i = 0; i < s.Length; i++)
        {
            int cp = s[i];
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cp = char.ConvertToUtf32(s[i], s[i + 1]);
                i++;
            }
            if (cp == quote || cp == '\\')
                sb.Append('\\').Append((char)cp);
            else if (cp == '\t')
                sb.Append("\\t");
            else if (cp == '\n')
                sb.Append("\\n");
            else if (cp == '\r')
                sb.Append("\\r");
            else if (cp < 0x20 || cp == 0x7f)
                sb.Append("\\x").Append(cp.ToString("x2", CultureInfo.InvariantCulture));
            else if (cp < 0x7f)
                sb.Append((char)cp);
            else if (!PyStr.IsPrintable(cp))
            {
                if (cp <= 0xff)
                    sb.Append("\\x").Append(cp.ToString("x2", CultureInfo.InvariantCulture));
                else if (cp <= 0xffff)
                    sb.Append("\\u").Append(cp.ToString("x4", CultureInfo.InvariantCulture));
                else
                    sb.Append("\\U").Append(cp.ToString("x8", CultureInfo.InvariantCulture));
            }
            else
                sb.Append(char.ConvertFromUtf32(cp));
        }
        sb.Append(quote);
    }

    /// <summary>Python's repr(float): shortest round-trip digits, "1.0" for integral values, exponent past 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
            return "nan";
        if (double.IsInfinity(d))
            return d > 0 ? "inf" : "-inf";
        var (negative, digits, decpt) = ShortestDigits(d);
        var sb = new StringBuilder();
        if (negative)
            sb.Append('-');
        if (decpt <= -4 || decpt > 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1)
                sb.Append('.').Append(digits, 1, digits.Length - 1);
            int exp = decpt - 1;
            sb.Append('e').Append(exp < 0 ? '-' : '+').Append(Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (decpt <= 0)
            sb.Append("0.").Append('0', -decpt).Append(digits);
        else if (decpt >= digits.Length)
            sb.Append(digits).Append('0', decpt - digits.Length).Append(".0");
        else
            sb.Append(digits, 0, decpt).Append('.').Append(digits, decpt, digits.Length - decpt);
        return sb.ToString();
    }

    /// <summary>Shortest round-trip decimal digits of |d| and the decimal point position: |d| = 0.DIGITS * 10^decpt.</summary>
    public static (bool Negative, string Digits, int DecimalPoint) ShortestDigits(double d)
    {
        bool negative = double.IsNegative(d);
        string r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int exp = 0;
        int e = r.IndexOf('E');
        if (e >= 0)
        {
            exp = int.Parse(r.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        int dot = r.IndexOf('.');
        string digits = dot >= 0 ? r.Remove(dot, 1) : r;
        int decpt = (dot >= 0 ? dot : r.Length) + exp;
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0')
            lead++;
        digits = digits[lead..];
        decpt -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0)
            return (negative, "0", 1);
        return (negative, digits, decpt);
    }

    // ---------------------------------------------------------------- equality and ordering

    public static bool Equal(object? a, object? b)
    {
        if (ReferenceEquals(a, b))
            return true;
        switch (a)
        {
            case null:
                return b is null;
            case string sa:
                return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case bool or long or double or BigInteger:
                return IsNumber(b) && NumericCompare(a, b) == 0;
            case List<object?> la:
                return b is List<object?> lb && SequenceEqual(la, lb);
            case PyTuple ta:
                return b is PyTuple tb && SequenceEqual(ta.Items, tb.Items);
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count)
                    return false;
                foreach (var (k, v) in da.Items)
                {
                    if (!db.TryGet(k, out var other) || !Equal(v, other))
                        return false;
                }
                return true;
            case Undefined:
                return b is Undefined;
            case PyRange ra:
                return b is PyRange rb && ra.Count == rb.Count
                    && (ra.Count == 0 || (ra.Start == rb.Start && (ra.Count == 1 || ra.Step == rb.Step)));
            default:
                return false;
        }
    }

    private static bool SequenceEqual(IReadOnlyList<object?> a, IReadOnlyList<object?> b)
    {
        if (a.Count != b.Count)
            return false;
        for (int i = 0; i < a.Count; i++)
        {
            if (!Equal(a[i], b[i]))
                return false;
        }
        return true;
    }

    /// <summary>Python's &lt; ordering; throws for types Python cannot order.</summary>
    public static int Compare(object? a, object? b, string op = "<")
    {
        if (IsNumber(a) && IsNumber(b))
        {
            int c = NumericCompare(a, b);
            if (c == 2)
                throw new JinjaError($"'{op}' is not defined for NaN");
            return c;
        }
        if (a is string sa && b is string sb)
            return PyStr.CompareCodePoints(sa, sb);
        if (a is List<object?> la && b is List<object?> lb)
            return CompareSequences(la, lb, op);
        if (a is PyTuple ta && b is PyTuple tb)
            return CompareSequences(ta.Items, tb.Items, op);
        if (a is Undefined u)
            throw new JinjaError(u.Hint);
        if (b is Undefined ub)
            throw new JinjaError(ub.Hint);
        throw new JinjaError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static int CompareSequences(IReadOnlyList<object?> a, IReadOnlyList<object?> b, string op)
    {
        int n = Math.Min(a.Count, b.Count);
        for (int i = 0; i < n; i++)
        {
            if (!Equal(a[i], b[i]))
                return Compare(a[i], b[i], op);
        }
        return a.Count.CompareTo(b.Count);
    }

    /// <summary>-1, 0, 1, or 2 when either side is NaN.</summary>
    private static int NumericCompare(object? a, object? b)
    {
        if (a is double || b is double)
        {
            double x = ToDouble(a), y = ToDouble(b);
            if (double.IsNaN(x) || double.IsNaN(y))
                return 2;
            // Exact comparison of a big integer with a double: compare as BigInteger when the double is integral.
            if ((a is BigInteger || b is BigInteger) && !double.IsInfinity(x) && !double.IsInfinity(y))
            {
                if (a is double da && Math.Floor(da) == da)
                    return new BigInteger(da).CompareTo(ToBig(b));
                if (b is double db && Math.Floor(db) == db)
                    return ToBig(a).CompareTo(new BigInteger(db));
            }
            return x.CompareTo(y);
        }
        if (a is BigInteger || b is BigInteger)
            return ToBig(a).CompareTo(ToBig(b));
        return ToLong(a).CompareTo(ToLong(b));
    }

    public static double ToDouble(object? v) => v switch
    {
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        BigInteger big => (double)big,
        _ => throw new JinjaError($"expected a number, got '{TypeName(v)}'"),
    };

    private static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new JinjaError($"expected an integer, got '{TypeName(v)}'"),
    };

    private static BigInteger ToBig(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        BigInteger big => big,
        _ => throw new JinjaError($"expected an integer, got '{TypeName(v)}'"),
    };

    /// <summary>Normalizes an integer result: long when it fits.</summary>
    public static object Int(BigInteger value) => value >= long.MinValue && value <= long.MaxValue ? (object)(long)value : value;

    // ---------------------------------------------------------------- arithmetic

    public static object? Add(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
                return ToDouble(a) + ToDouble(b);
            if (a is BigInteger || b is BigInteger)
                return Int(ToBig(a) + ToBig(b));
            long x = ToLong(a), y = ToLong(b);
            long r = unchecked(x + y);
            return ((x ^ r) & (y ^ r)) < 0 ? Int((BigInteger)x + y) : r;
        }
        switch (a, b)
        {
            case (string sa, string sb):
                return string.Concat(sa, sb);
            case (List<object?> la, List<object?> lb):
                return new List<object?>(la.Concat(lb));
            case (PyTuple ta, PyTuple tb):
                return new PyTuple([.. ta.Items, .. tb.Items]);
        }
        throw BinaryTypeError("+", a, b);
    }

    public static object? Subtract(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
                return ToDouble(a) - ToDouble(b);
            return Int(ToBig(a) - ToBig(b));
        }
        throw BinaryTypeError("-", a, b);
    }

    public static object? Multiply(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
                return ToDouble(a) * ToDouble(b);
            return Int(ToBig(a) * ToBig(b));
        }
        if (IsRepeatable(a) && b is long or bool or BigInteger)
            return Repeat(a, b);
        if (IsRepeatable(b) && a is long or bool or BigInteger)
            return Repeat(b, a);
        throw BinaryTypeError("*", a, b);
    }

    private static bool IsRepeatable(object? v) => v is string or List<object?> or PyTuple;

    private static object Repeat(object? seq, object? times)
    {
        BigInteger n = ToBig(times);
        if (n <= 0)
            return seq switch { string => "", PyTuple => PyTuple.Empty, _ => new List<object?>() };
        long length = seq switch { string s => s.Length, List<object?> l => l.Count, PyTuple t => t.Count, _ => 0 };
        if (n * length > 100_000_000)
            throw new JinjaError("repetition result is too large");
        int count = (int)n;
        switch (seq)
        {
            case string s:
                return new StringBuilder(s.Length * count).Insert(0, s, count).ToString();
            case List<object?> list:
                var result = new List<object?>(list.Count * count);
                for (int i = 0; i < count; i++)
                    result.AddRange(list);
                return result;
            default:
                var t = (PyTuple)seq!;
                var items = new List<object?>(t.Count * count);
                for (int i = 0; i < count; i++)
                    items.AddRange(t.Items);
                return new PyTuple([.. items]);
        }
    }

    public static object TrueDivide(object? a, object? b)
    {
        if (!IsNumber(a) || !IsNumber(b))
            throw BinaryTypeError("/", a, b);
        double y = ToDouble(b);
        if (y == 0)
            throw new JinjaError("division by zero");
        return ToDouble(a) / y;
    }

    public static object FloorDivide(object? a, object? b)
    {
        if (!IsNumber(a) || !IsNumber(b))
            throw BinaryTypeError("//", a, b);
        if (a is double || b is double)
        {
            double x = ToDouble(a), y = ToDouble(b);
            if (y == 0)
                throw new JinjaError("float floor division by zero");
            return Math.Floor(x / y);
        }
        BigInteger bx = ToBig(a), by = ToBig(b);
        if (by.IsZero)
            throw new JinjaError("integer division or modulo by zero");
        var q = BigInteger.DivRem(bx, by, out var rem);
        if (!rem.IsZero && (rem.Sign < 0) != (by.Sign < 0))
            q -= 1;
        return Int(q);
    }

    public static object Modulo(object? a, object? b)
    {
        if (a is string format)
            return PyFormat.Percent(format, b);
        if (!IsNumber(a) || !IsNumber(b))
            throw BinaryTypeError("%", a, b);
        if (a is double || b is double)
        {
            double x = ToDouble(a), y = ToDouble(b);
            if (y == 0)
                throw new JinjaError("float modulo");
            double m = x % y;
            if (m != 0 && (m < 0) != (y < 0))
                m += y;
            return m;
        }
        BigInteger bx = ToBig(a), by = ToBig(b);
        if (by.IsZero)
            throw new JinjaError("integer division or modulo by zero");
        var r = BigInteger.Remainder(bx, by);
        if (!r.IsZero && (r.Sign < 0) != (by.Sign < 0))
            r += by;
        return Int(r);
    }

    public static object Power(object? a, object? b)
    {
        if (!IsNumber(a) || !IsNumber(b))
            throw BinaryTypeError("**", a, b);
        if (a is double || b is double || ToBig(b).Sign < 0)
        {
            double x = ToDouble(a), y = ToDouble(b);
            if (x == 0 && y < 0)
                throw new JinjaError("0.0 cannot be raised to a negative power");
            return Math.Pow(x, y);
        }
        BigInteger exponent = ToBig(b), baseValue = ToBig(a);
        if (exponent > 100_000 && BigInteger.Abs(baseValue) > 1)
            throw new JinjaError("exponent is too large");
        return Int(BigInteger.Pow(baseValue, (int)exponent));
    }

    public static object Negate(object? a) => a switch
    {
        long l when l != long.MinValue => -l,
        long l => Int(-(BigInteger)l),
        bool b => b ? -1L : 0L,
        BigInteger big => Int(-big),
        double d => -d,
        Undefined u => throw new JinjaError(u.Hint),
        _ => throw new JinjaError($"bad operand type for unary -: '{TypeName(a)}'"),
    };

    public static object Plus(object? a) => a switch
    {
        long or double or BigInteger => a,
        bool b => b ? 1L : 0L,
        Undefined u => throw new JinjaError(u.Hint),
        _ => throw new JinjaError($"bad operand type for unary +: '{TypeName(a)}'"),
    };

    private static JinjaError BinaryTypeError(string op, object? a, object? b)
    {
        if (a is Undefined ua)
            return new JinjaError(ua.Hint);
        if (b is Undefined ub)
            return new JinjaError(ub.Hint);
        if (op == "+" && (a is string || b is string))
            return new JinjaError(a is string
                ? $"can only concatenate str (not \"{TypeName(b)}\") to str"
                : $"unsupported operand type(s) for +: '{TypeName(a)}' and 'str'");
        return new JinjaError($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    // ---------------------------------------------------------------- containers

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is not string sub)
                    throw new JinjaError($"'in <string>' requires string as left operand, not {TypeName(item)}");
                return s.Contains(sub, StringComparison.Ordinal);
            case List<object?> list:
                return list.Any(x => Equal(x, item));
            case PyTuple t:
                return t.Items.Any(x => Equal(x, item));
            case PyDict d:
                if (item is not null && !PyKeyComparer.IsHashable(item))
                    throw new JinjaError($"unhashable type: '{TypeName(item)}'");
                return d.ContainsKey(item);
            case Undefined:
                return false;
            case PyRange range:
                return range.Items().Any(x => Equal(x, item));
            case PyView or PyIterator or LoopContext:
                return Iterate(container).Any(x => Equal(x, item));
            default:
                throw new JinjaError($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    public static IEnumerable<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list,
        PyTuple t => t.Items,
        PyDict d => d.Keys,
        string s => PyStr.Chars(s),
        Undefined => [],
        PyIterator it => it.Drain(),
        PyView view => view.Items,
        PyRange range => range.Items(),
        LoopContext loop => loop.Items,
        _ => throw new JinjaError($"'{TypeName(value)}' object is not iterable"),
    };

    /// <summary>A snapshot list of the items, so that a loop body cannot observe later changes.</summary>
    public static List<object?> ToList(object? value) => [.. Iterate(value)];

    public static long Length(object? value) => value switch
    {
        string s => PyStr.Length(s),
        List<object?> list => list.Count,
        PyTuple t => t.Count,
        PyDict d => d.Count,
        PyView view => view.Items.Count,
        PyRange range => range.Count,
        LoopContext loop => loop.Length,
        Undefined => 0,
        _ => throw new JinjaError($"object of type '{TypeName(value)}' has no len()"),
    };

    /// <summary>Python's <c>obj[index]</c> for sequences; returns false when out of range (Jinja then yields undefined).</summary>
    public static bool TryIndex(object? container, object? key, out object? result)
    {
        result = null;
        switch (container)
        {
            case PyDict d:
                return d.TryGet(key, out result);
            case List<object?> list when key is long or bool:
                return TryIndexList(list, ToLongIndex(key), out result);
            case PyTuple t when key is long or bool:
                return TryIndexList(t.Items, ToLongIndex(key), out result);
            case string s when key is long or bool:
                {
                    var cps = PyStr.Chars(s);
                    return TryIndexList(cps, ToLongIndex(key), out result);
                }
            case PyRange range when key is long or bool:
                {
                    long index = ToLongIndex(key);
                    if (index < 0)
                        index += range.Count;
                    if (index < 0 || index >= range.Count)
                        return false;
                    result = range[(int)index];
                    return true;
                }
            default:
                return false;
        }
    }

    private static long ToLongIndex(object? key) => key is bool b ? (b ? 1 : 0) : (long)key!;

    private static bool TryIndexList<T>(IReadOnlyList<T> list, long index, out object? result)
    {
        if (index < 0)
            index += list.Count;
        if (index < 0 || index >= list.Count)
        {
            result = null;
            return false;
        }
        result = list[(int)index];
        return true;
    }

    /// <summary>Python slicing of a list, tuple or string.</summary>
    public static object Slice(object? container, object? start, object? stop, object? step)
    {
        long stepValue = step is null or Undefined ? 1 : SliceIndex(step);
        if (stepValue == 0)
            throw new JinjaError("slice step cannot be zero");
        IReadOnlyList<object?> items = container switch
        {
            List<object?> list => list,
            PyTuple t => t.Items,
            string s => PyStr.Chars(s),
            Undefined u => throw new JinjaError(u.Hint),
            _ => throw new JinjaError($"'{TypeName(container)}' object is not subscriptable"),
        };
        int n = items.Count;
        long lower, upper;
        if (stepValue > 0)
        {
            lower = Clamp(start, 0, n, 0, n);
            upper = Clamp(stop, n, n, 0, n);
        }
        else
        {
            lower = Clamp(start, n - 1, n, -1, n - 1);
            upper = Clamp(stop, -1, n, -1, n - 1);
        }
        var picked = new List<object?>();
        if (stepValue > 0)
        {
            for (long i = lower; i < upper; i += stepValue)
                picked.Add(items[(int)i]);
        }
        else
        {
            for (long i = lower; i > upper; i += stepValue)
                picked.Add(items[(int)i]);
        }
        return container switch
        {
            string => string.Concat(picked.Cast<string>()),
            PyTuple => new PyTuple([.. picked]),
            _ => picked,
        };

        static long Clamp(object? bound, long missing, int n, long min, long max)
        {
            if (bound is null or Undefined)
                return missing;
            long v = SliceIndex(bound);
            if (v < 0)
                v += n;
            return Math.Clamp(v, min, max);
        }
    }

    private static long SliceIndex(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        BigInteger big => big > int.MaxValue ? int.MaxValue : big < int.MinValue ? int.MinValue : (long)big,
        _ => throw new JinjaError("slice indices must be integers or None"),
    };
}
