using System.Globalization;
using System.Numerics;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

/// <summary>Python's printf-style <c>%</c> formatting and <c>str.format</c>, for the conversions templates use.
/// Anything outside that subset fails with a clear error rather than formatting differently from Python.</summary>
internal static class PyFormat
{
    public static string Percent(string format, object? args)
    {
        IReadOnlyList<object?> positional = args switch
        {
            PyTuple t => t.Items,
            _ => [args],
        };
        var mapping = args as PyDict;
        int next = 0;
        var sb = new StringBuilder();
        int i = 0;
        while (i < format.Length)
        {
            char c = format[i++];
            if (c != '%')
            {
                sb.Append(c);
                continue;
            }
            if (i >= format.Length)
                throw new JinjaError("incomplete format");
            object? value;
            bool fromKey = false;
            string? key = null;
            if (format[i] == '(')
            {
                int close = format.IndexOf(')', i);
                if (close < 0)
                    throw new JinjaError("incomplete format key");
                key = format[(i + 1)..close];
                i = close + 1;
                fromKey = true;
            }
            var spec = new Spec();
            while (i < format.Length && "-+ #0".Contains(format[i]))
                spec.Flag(format[i++]);
            spec.Width = ReadNumber(format, ref i);
            if (i < format.Length && format[i] == '.')
            {
                i++;
                spec.Precision = ReadNumber(format, ref i) ?? 0;
            }
            if (i >= format.Length)
                throw new JinjaError("incomplete format");
            char type = format[i++];
            if (type == '%')
            {
                sb.Append('%');
                continue;
            }
            if (fromKey)
            {
                if (mapping is null)
                    throw new JinjaError("format requires a mapping");
                if (!mapping.TryGet(key, out value))
                    throw new JinjaError($"KeyError: {Py.Repr(key)}");
            }
            else
            {
                if (next >= positional.Count)
                    throw new JinjaError("not enough arguments for format string");
                value = positional[next++];
            }
            spec.Type = type;
            sb.Append(Apply(value, spec));
        }
        if (mapping is null && next < positional.Count)
            throw new JinjaError("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static int? ReadNumber(string s, ref int i)
    {
        int start = i;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
            i++;
        if (i < s.Length && s[i] == '*')
            throw new JinjaError("'*' width in format strings is not supported");
        return i > start ? int.Parse(s.AsSpan(start, i - start), CultureInfo.InvariantCulture) : null;
    }

    /// <summary><c>str.format(*args, **kwargs)</c>: fields {}, {0}, {name}, {0.attr}/{0[key]} lookups, !r/!s, and a format-spec subset.</summary>
    public static string Format(string format, CallArgs args, Func<object?, string, object?> getAttribute)
    {
        var sb = new StringBuilder();
        int auto = 0;
        int i = 0;
        while (i < format.Length)
        {
            char c = format[i];
            if (c == '{' && i + 1 < format.Length && format[i + 1] == '{')
            {
                sb.Append('{');
                i += 2;
                continue;
            }
            if (c == '}' && i + 1 < format.Length && format[i + 1] == '}')
            {
                sb.Append('}');
                i += 2;
                continue;
            }
            if (c == '}')
                throw new JinjaError("Single '}' encountered in format string");
            if (c != '{')
            {
                sb.Append(c);
                i++;
                continue;
            }
            int close = format.IndexOf('}', i);
            if (close < 0)
                throw new JinjaError("Single '{' encountered in format string");
            string field = format[(i + 1)..close];
            i = close + 1;
            string? spec = null, conversion = null;
            int colon = field.IndexOf(':');
            if (colon >= 0)
            {
                spec = field[(colon + 1)..];
                field = field[..colon];
            }
            int bang = field.IndexOf('!');
            if (bang >= 0)
            {
                conversion = field[(bang + 1)..];
                field = field[..bang];
            }
            int end = 0;
            while (end < field.Length && field[end] != '.' && field[end] != '[')
                end++;
            string head = field[..end];
            object? value;
            if (head.Length == 0)
                value = Positional(auto++);
            else if (int.TryParse(head, NumberStyles.None, CultureInfo.InvariantCulture, out int index))
                value = Positional(index);
            else
            {
                var named = args.Named.FirstOrDefault(kv => kv.Key == head);
                if (named.Key is null)
                    throw new JinjaError($"KeyError: '{head}'");
                value = named.Value;
            }
            while (end < field.Length)
            {
                if (field[end] == '.')
                {
                    int start = ++end;
                    while (end < field.Length && field[end] != '.' && field[end] != '[')
                        end++;
                    value = getAttribute(value, field[start..end]);
                }
                else
                {
                    int stop = field.IndexOf(']', end);
                    if (stop < 0)
                        throw new JinjaError("Missing ']' in format string");
                    string k = field[(end + 1)..stop];
                    object key = long.TryParse(k, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n : k;
                    if (!Py.TryIndex(value, key, out value))
                        throw new JinjaError($"KeyError: {Py.Repr(key)}");
                    end = stop + 1;
                }
            }
            value = conversion switch
            {
                null => value,
                "r" => Py.Repr(value),
                "s" => Py.Str(value),
                _ => throw new JinjaError($"Unknown conversion specifier {conversion}"),
            };
            sb.Append(FormatSpec(value, spec ?? ""));
        }
        return sb.ToString();

        object? Positional(int index) => index < args.Positional.Count
            ? args.Positional[index]
            : throw new JinjaError($"Replacement index {index} out of range for positional args tuple");
    }

    /// <summary>Python's format(value, spec) for [[fill]align][sign][0][width][.precision][type].</summary>
    public static string FormatSpec(object? value, string specText)
    {
        if (specText.Length == 0)
            return Py.Str(value);
        var spec = new Spec();
        int i = 0;
        char? fill = null, align = null;
        if (specText.Length >= 2 && "<>^=".Contains(specText[1]))
        {
            fill = specText[0];
            align = specText[1];
            i = 2;
        }
        else if ("<>^=".Contains(specText[0]))
        {
            align = specText[0];
            i = 1;
        }
        if (i < specText.Length && "+- ".Contains(specText[i]))
            spec.Flag(specText[i++]);
        if (i < specText.Length && specText[i] == '0')
        {
            spec.Flag('0');
            i++;
        }
        spec.Width = ReadNumber(specText, ref i);
        if (i < specText.Length && specText[i] == '.')
        {
            i++;
            spec.Precision = ReadNumber(specText, ref i) ?? throw new JinjaError("Format specifier missing precision");
        }
        char type = i < specText.Length ? specText[i++] : '\0';
        if (i != specText.Length)
            throw new JinjaError($"format spec '{specText}' is not supported");
        if (type == '\0')
            type = value is string ? 's' : Py.IsInteger(value) || value is bool ? 'd' : value is double ? 'r' : 's';
        spec.Type = type;
        string body = Apply(value, spec with { Width = null, LeftAlign = false, ZeroPad = false });
        int width = spec.Width ?? 0;
        long length = PyStr.Length(body);
        if (length >= width)
            return body;
        char padChar = fill ?? (spec.ZeroPad && align is null ? '0' : ' ');
        char effectiveAlign = align ?? (spec.ZeroPad ? '=' : value is string ? '<' : '>');
        int pad = width - (int)length;
        return effectiveAlign switch
        {
            '<' => body + new string(padChar, pad),
            '>' => new string(padChar, pad) + body,
            '^' => new string(padChar, pad / 2) + body + new string(padChar, pad - pad / 2),
            _ => body.Length > 0 && "+- ".Contains(body[0])
                ? body[0] + new string(padChar, pad) + body[1..]
                : new string(padChar, pad) + body,
        };
    }

    private record struct Spec
    {
        public bool LeftAlign;
        public bool ZeroPad;
        public char Sign;
        public bool Alternate;
        public int? Width;
        public int? Precision;
        public char Type;

        public void Flag(char c)
        {
            switch (c)
            {
                case '-': LeftAlign = true; break;
                case '0': ZeroPad = true; break;
                case '+': Sign = '+'; break;
                case ' ': if (Sign != '+') Sign = ' '; break;
                case '#': Alternate = true; break;
            }
        }
    }

    private static string Apply(object? value, Spec spec)
    {
        string body = spec.Type switch
        {
            's' => Py.Str(value),
            'r' => value is double rd ? Py.FloatRepr(rd) : Py.Repr(value),
            'a' => Py.Repr(value),
            'd' or 'i' or 'u' => Signed(ToInteger(value, spec.Type), spec),
            'x' => Signed(ToInteger(value, 'x'), spec, b => b.ToString("x", CultureInfo.InvariantCulture).TrimStart('0').PadLeft(1, '0'), spec.Alternate ? "0x" : ""),
            'X' => Signed(ToInteger(value, 'X'), spec, b => b.ToString("X", CultureInfo.InvariantCulture).TrimStart('0').PadLeft(1, '0'), spec.Alternate ? "0X" : ""),
            'o' => Signed(ToInteger(value, 'o'), spec, Octal, spec.Alternate ? "0o" : ""),
            'f' or 'F' => SignedFloat(ToFloat(value), spec, d => FixedPoint(d, spec.Precision ?? 6)),
            'e' or 'E' => SignedFloat(ToFloat(value), spec, d => Exponent(d, spec.Precision ?? 6, spec.Type)),
            '%' => SignedFloat(ToFloat(value) * 100, spec, d => FixedPoint(d, spec.Precision ?? 6)) + "%",
            'c' => value is string cs && PyStr.Length(cs) == 1 ? cs : char.ConvertFromUtf32((int)Py.ToDouble(value)),
            _ => throw new JinjaError($"unsupported format character '{spec.Type}'"),
        };
        if (spec.Type is 's' or 'r' or 'a' && spec.Precision is int p && PyStr.Length(body) > p)
            body = PyStr.FromCodePoints(PyStr.CodePoints(body).Take(p));
        int width = spec.Width ?? 0;
        long length = PyStr.Length(body);
        if (length >= width)
            return body;
        int pad = width - (int)length;
        if (spec.LeftAlign)
            return body + new string(' ', pad);
        if (spec.ZeroPad && spec.Type is not ('s' or 'r' or 'a' or 'c'))
        {
            int signLength = body.Length > 0 && "+- ".Contains(body[0]) ? 1 : 0;
            return body[..signLength] + new string('0', pad) + body[signLength..];
        }
        return new string(' ', pad) + body;
    }

    private static BigInteger ToInteger(object? value, char type) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        BigInteger big => big,
        double d when type is 'd' or 'i' or 'u' => double.IsFinite(d) ? new BigInteger(Math.Truncate(d)) : throw new JinjaError("cannot convert float infinity or NaN to integer"),
        _ => throw new JinjaError($"%{type} format: a real number is required, not {Py.TypeName(value)}"),
    };

    private static double ToFloat(object? value) => Py.IsNumber(value)
        ? Py.ToDouble(value)
        : throw new JinjaError($"must be real number, not {Py.TypeName(value)}");

    private static string Octal(BigInteger b)
    {
        if (b.IsZero)
            return "0";
        var sb = new StringBuilder();
        while (!b.IsZero)
        {
            sb.Insert(0, (char)('0' + (int)(b % 8)));
            b /= 8;
        }
        return sb.ToString();
    }

    private static string Signed(BigInteger value, Spec spec, Func<BigInteger, string>? digits = null, string prefix = "")
    {
        string magnitude = (digits ?? (b => b.ToString(CultureInfo.InvariantCulture)))(BigInteger.Abs(value));
        string sign = value.Sign < 0 ? "-" : spec.Sign == '\0' ? "" : spec.Sign.ToString();
        return sign + prefix + magnitude;
    }

    private static string SignedFloat(double value, Spec spec, Func<double, string> body)
    {
        if (double.IsNaN(value))
            return (spec.Sign == '\0' ? "" : spec.Sign.ToString()) + (char.IsUpper(spec.Type) ? "NAN" : "nan");
        bool negative = double.IsNegative(value);
        string text = double.IsInfinity(value) ? (char.IsUpper(spec.Type) ? "INF" : "inf") : body(Math.Abs(value));
        string sign = negative ? "-" : spec.Sign == '\0' ? "" : spec.Sign.ToString();
        return sign + text;
    }

    /// <summary>Fixed-point with correct rounding of the exact binary value (ties to even), as Python does.</summary>
    public static string FixedPoint(double value, int precision)
    {
        var (mantissa, exponent) = Decompose(value);
        // value = mantissa * 2^exponent; scaled = value * 10^precision as an exact fraction num/den.
        BigInteger num = mantissa * BigInteger.Pow(10, precision);
        BigInteger den = BigInteger.One;
        if (exponent >= 0)
            num <<= exponent;
        else
            den <<= -exponent;
        BigInteger q = BigInteger.DivRem(num, den, out var rem);
        BigInteger twice = rem * 2;
        if (twice > den || (twice == den && !q.IsEven))
            q += 1;
        string digits = q.ToString(CultureInfo.InvariantCulture);
        if (precision == 0)
            return digits;
        digits = digits.PadLeft(precision + 1, '0');
        return digits[..^precision] + "." + digits[^precision..];
    }

    private static string Exponent(double value, int precision, char type)
    {
        if (value == 0)
            return FixedPoint(0, precision) + (type == 'E' ? "E+00" : "e+00");
        int exp10 = (int)Math.Floor(Math.Log10(value));
        string mantissa = FixedPoint(value / Math.Pow(10, exp10), precision);
        if (mantissa.StartsWith("10", StringComparison.Ordinal))
        {
            exp10++;
            mantissa = FixedPoint(value / Math.Pow(10, exp10), precision);
        }
        string e = (exp10 < 0 ? "-" : "+") + Math.Abs(exp10).ToString("00", CultureInfo.InvariantCulture);
        return mantissa + (type == 'E' ? "E" : "e") + e;
    }

    private static (BigInteger Mantissa, int Exponent) Decompose(double value)
    {
        long bits = BitConverter.DoubleToInt64Bits(Math.Abs(value));
        int rawExponent = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        if (rawExponent == 0)
            return (fraction, -1074);
        return (fraction | (1L << 52), rawExponent - 1075);
    }

    /// <summary>Python's round(x, ndigits) for floats: correctly rounded, ties to even on the exact binary value.</summary>
    public static double Round(double value, int digits)
    {
        if (!double.IsFinite(value) || digits > 300)
            return value;
        if (digits < 0)
        {
            double scale = Math.Pow(10, -digits);
            double scaled = value / scale;
            double r = Math.Round(scaled, MidpointRounding.ToEven) * scale;
            return r;
        }
        string text = FixedPoint(Math.Abs(value), digits);
        double result = double.Parse(text, CultureInfo.InvariantCulture);
        return double.IsNegative(value) ? -result : result;
    }
}
