using System.Globalization;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

/// <summary>Python str semantics: code-point indexing, str.isspace, full case mappings, split/strip/replace.</summary>
internal static class PyStr
{
    /// <summary>Python's str.isspace (also what Python's regex \s matches).</summary>
    public static bool IsSpace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D => true,
        >= 0x1C and <= 0x20 => true,
        0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>Python's str.isprintable for one code point.</summary>
    public static bool IsPrintable(int cp)
    {
        if (cp == ' ')
            return true;
        var category = CharUnicodeInfo.GetUnicodeCategory(cp);
        return category is not (UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator
            or UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator);
    }

    /// <summary>Code points of s; a lone surrogate counts as one code point, as in Python.</summary>
    public static List<int> CodePoints(string s)
    {
        var cps = new List<int>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cps.Add(char.ConvertToUtf32(s[i], s[i + 1]));
                i++;
            }
            else
                cps.Add(s[i]);
        }
        return cps;
    }

    public static string FromCodePoints(IEnumerable<int> cps)
    {
        var sb = new StringBuilder();
        foreach (int cp in cps)
            AppendCodePoint(sb, cp);
        return sb.ToString();
    }

    public static void AppendCodePoint(StringBuilder sb, int cp)
    {
        if (cp >= 0x10000)
            sb.Append(char.ConvertFromUtf32(cp));
        else
            sb.Append((char)cp);
    }

    /// <summary>The string's characters as one-code-point strings (Python iteration).</summary>
    public static List<object?> Chars(string s)
    {
        var chars = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                chars.Add(s.Substring(i, 2));
                i++;
            }
            else
                chars.Add(s[i].ToString());
        }
        return chars;
    }

    public static long Length(string s)
    {
        long n = s.Length;
        for (int i = 0; i + 1 < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && char.IsLowSurrogate(s[i + 1]))
            {
                n--;
                i++;
            }
        }
        return n;
    }

    /// <summary>Converts a UTF-16 offset into a code-point index.</summary>
    public static long CodePointIndex(string s, int utf16Index) => utf16Index < 0 ? utf16Index : Length(s[..utf16Index]);

    /// <summary>Python string ordering: by code point (UTF-16 ordinal order differs above U+D7FF).</summary>
    public static int CompareCodePoints(string a, string b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++)
        {
            char x = a[i], y = b[i];
            if (x == y)
                continue;
            if (char.IsSurrogate(x) || char.IsSurrogate(y))
            {
                var ca = CodePoints(a[i..]);
                var cb = CodePoints(b[i..]);
                return ca[0].CompareTo(cb[0]);
            }
            return x.CompareTo(y);
        }
        return a.Length.CompareTo(b.Length);
    }

    // ---------------------------------------------------------------- strip

    public static string Strip(string s, string? chars, bool left = true, bool right = true)
    {
        var cps = CodePoints(s);
        Func<int, bool> strip = chars is null ? IsSpace : CodePoints(chars).ToHashSet().Contains;
        int start = 0, end = cps.Count;
        if (left)
        {
            while (start < end && strip(cps[start]))
                start++;
        }
        if (right)
        {
            while (end > start && strip(cps[end - 1]))
                end--;
        }
        return start == 0 && end == cps.Count ? s : FromCodePoints(cps.GetRange(start, end - start));
    }

    /// <summary>Python's str.rstrip() (whitespace) on a span, used by the lexer.</summary>
    public static int RStripLength(string s, int start, int end)
    {
        while (end > start)
        {
            int cp = s[end - 1];
            if (char.IsLowSurrogate(s[end - 1]))
                return end - start;
            if (!IsSpace(cp))
                break;
            end--;
        }
        return end - start;
    }

    // ---------------------------------------------------------------- split

    public static List<object?> Split(string s, string? sep, long maxsplit)
    {
        var result = new List<object?>();
        if (sep is null)
        {
            var cps = CodePoints(s);
            int i = 0, n = cps.Count;
            while (true)
            {
                while (i < n && IsSpace(cps[i]))
                    i++;
                if (i >= n)
                    break;
                if (maxsplit >= 0 && result.Count >= maxsplit)
                {
                    int end = n;
                    while (end > i && IsSpace(cps[end - 1]))
                        end--;
                    result.Add(FromCodePoints(cps.GetRange(i, end - i)));
                    break;
                }
                int j = i;
                while (j < n && !IsSpace(cps[j]))
                    j++;
                result.Add(FromCodePoints(cps.GetRange(i, j - i)));
                i = j;
            }
            return result;
        }
        if (sep.Length == 0)
            throw new JinjaError("empty separator");
        int pos = 0;
        while (maxsplit < 0 || result.Count < maxsplit)
        {
            int at = s.IndexOf(sep, pos, StringComparison.Ordinal);
            if (at < 0)
                break;
            result.Add(s[pos..at]);
            pos = at + sep.Length;
        }
        result.Add(s[pos..]);
        return result;
    }

    public static List<object?> RSplit(string s, string? sep, long maxsplit)
    {
        if (maxsplit < 0)
            return Split(s, sep, -1);
        if (sep is null)
        {
            var cps = CodePoints(s);
            var parts = new List<object?>();
            int i = cps.Count;
            while (true)
            {
                while (i > 0 && IsSpace(cps[i - 1]))
                    i--;
                if (i <= 0)
                    break;
                if (parts.Count >= maxsplit)
                {
                    int start = 0;
                    while (start < i && IsSpace(cps[start]))
                        start++;
                    parts.Add(FromCodePoints(cps.GetRange(start, i - start)));
                    break;
                }
                int j = i;
                while (j > 0 && !IsSpace(cps[j - 1]))
                    j--;
                parts.Add(FromCodePoints(cps.GetRange(j, i - j)));
                i = j;
            }
            parts.Reverse();
            return parts;
        }
        if (sep.Length == 0)
            throw new JinjaError("empty separator");
        var result = new List<object?>();
        int end = s.Length;
        while (result.Count < maxsplit)
        {
            int at = end - sep.Length < 0 ? -1 : s.LastIndexOf(sep, end - 1, end, StringComparison.Ordinal);
            if (at < 0)
                break;
            result.Add(s[(at + sep.Length)..end]);
            end = at;
        }
        result.Add(s[..end]);
        result.Reverse();
        return result;
    }

    private static bool IsLineBreak(int cp) => cp is '\n' or '\r' or 0x0B or 0x0C or 0x1C or 0x1D or 0x1E or 0x85 or 0x2028 or 0x2029;

    public static List<string> SplitLines(string s, bool keepEnds = false)
    {
        var lines = new List<string>();
        int start = 0, i = 0;
        while (i < s.Length)
        {
            if (!IsLineBreak(s[i]))
            {
                i++;
                continue;
            }
            int eol = i;
            i += s[i] == '\r' && i + 1 < s.Length && s[i + 1] == '\n' ? 2 : 1;
            lines.Add(keepEnds ? s[start..i] : s[start..eol]);
            start = i;
        }
        if (start < s.Length)
            lines.Add(s[start..]);
        return lines;
    }

    // ---------------------------------------------------------------- case

    // .NET's invariant-globalization casing leaves dotless i and long s alone; Unicode (and Python) map them to I and S.
    public static string Upper(string s) => MapCase(s, CaseTables.UpperSpecial, cp => cp switch
    {
        0x0131 => 'I',
        0x017F => 'S',
        _ => Rune.ToUpperInvariant(new Rune(cp)).Value,
    });

    public static string Lower(string s)
    {
        var cps = CodePoints(s);
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < cps.Count; i++)
        {
            int cp = cps[i];
            if (cp == 0x03A3)
                sb.Append(IsFinalSigma(cps, i) ? '\u03C2' : '\u03C3');
            else if (CaseTables.LowerSpecial.TryGetValue(cp, out var special))
                sb.Append(special);
            else
                AppendCodePoint(sb, IsScalar(cp) ? Rune.ToLowerInvariant(new Rune(cp)).Value : cp);
        }
        return sb.ToString();
    }

    /// <summary>Python's str.title: the first cased character of each run of cased letters is titlecased, the rest lowered.</summary>
    public static string Title(string s)
    {
        var cps = CodePoints(s);
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        for (int i = 0; i < cps.Count; i++)
        {
            int cp = cps[i];
            if (previousCased)
                sb.Append(LowerOne(cps, i));
            else
                sb.Append(TitleOne(cp));
            previousCased = IsCased(cp);
        }
        return sb.ToString();
    }

    /// <summary>Python's str.capitalize: first character titlecased, the rest lowered.</summary>
    public static string Capitalize(string s)
    {
        var cps = CodePoints(s);
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < cps.Count; i++)
            sb.Append(i == 0 ? TitleOne(cps[i]) : LowerOne(cps, i));
        return sb.ToString();
    }

    public static string SwapCase(string s)
    {
        var cps = CodePoints(s);
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < cps.Count; i++)
        {
            int cp = cps[i];
            if (IsUpperCase(cp))
                sb.Append(LowerOne(cps, i));
            else if (IsLowerCase(cp))
                sb.Append(Upper(char.ConvertFromUtf32(cp)));
            else
                AppendCodePoint(sb, cp);
        }
        return sb.ToString();
    }

    private static string TitleOne(int cp)
    {
        if (CaseTables.TitleSpecial.TryGetValue(cp, out var title))
            return title;
        return Upper(IsScalar(cp) ? char.ConvertFromUtf32(cp) : ((char)cp).ToString());
    }

    private static string LowerOne(List<int> cps, int i)
    {
        int cp = cps[i];
        if (cp == 0x03A3)
            return IsFinalSigma(cps, i) ? "\u03C2" : "\u03C3";
        if (CaseTables.LowerSpecial.TryGetValue(cp, out var special))
            return special;
        return IsScalar(cp) ? char.ConvertFromUtf32(Rune.ToLowerInvariant(new Rune(cp)).Value) : ((char)cp).ToString();
    }

    private static string MapCase(string s, Dictionary<int, string> special, Func<int, int> simple)
    {
        var sb = new StringBuilder(s.Length);
        foreach (int cp in CodePoints(s))
        {
            if (special.TryGetValue(cp, out var mapped))
                sb.Append(mapped);
            else
                AppendCodePoint(sb, IsScalar(cp) ? simple(cp) : cp);
        }
        return sb.ToString();
    }

    private static bool IsScalar(int cp) => cp is < 0xD800 or (> 0xDFFF and <= 0x10FFFF);

    public static bool IsUpperCase(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.UppercaseLetter
        || (IsScalar(cp) && Rune.ToLowerInvariant(new Rune(cp)).Value != cp && Rune.ToUpperInvariant(new Rune(cp)).Value == cp
            && CharUnicodeInfo.GetUnicodeCategory(cp) != UnicodeCategory.TitlecaseLetter);

    public static bool IsLowerCase(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.LowercaseLetter
        || (IsScalar(cp) && Rune.ToUpperInvariant(new Rune(cp)).Value != cp && Rune.ToLowerInvariant(new Rune(cp)).Value == cp
            && CharUnicodeInfo.GetUnicodeCategory(cp) != UnicodeCategory.TitlecaseLetter);

    public static bool IsCased(int cp) => IsUpperCase(cp) || IsLowerCase(cp)
        || CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(int cp)
    {
        var category = CharUnicodeInfo.GetUnicodeCategory(cp);
        return category is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format
            or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol
            || cp is '\'' or '.' or ':' or '^' or '`' or 0xAD or 0xB7 or 0x2018 or 0x2019 or 0x2024 or 0x2027;
    }

    // Final sigma (Unicode 3.13): preceded by a cased letter and not followed by one, skipping case-ignorables.
    private static bool IsFinalSigma(List<int> cps, int i)
    {
        int j = i - 1;
        while (j >= 0 && IsCaseIgnorable(cps[j]))
            j--;
        if (j < 0 || !IsCased(cps[j]))
            return false;
        int k = i + 1;
        while (k < cps.Count && IsCaseIgnorable(cps[k]))
            k++;
        return k >= cps.Count || !IsCased(cps[k]);
    }

    // ---------------------------------------------------------------- search and replace

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count == 0)
            return s;
        if (old.Length == 0)
        {
            var chars = Chars(s);
            var sb = new StringBuilder();
            long done = 0;
            for (int i = 0; i <= chars.Count; i++)
            {
                if (count < 0 || done < count)
                {
                    sb.Append(replacement);
                    done++;
                }
                if (i < chars.Count)
                    sb.Append((string)chars[i]!);
            }
            return sb.ToString();
        }
        if (count < 0)
            return s.Replace(old, replacement, StringComparison.Ordinal);
        var result = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count; n++)
        {
            int at = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (at < 0)
                break;
            result.Append(s, pos, at - pos).Append(replacement);
            pos = at + old.Length;
        }
        result.Append(s, pos, s.Length - pos);
        return result.ToString();
    }

    public static long Count(string s, string sub)
    {
        if (sub.Length == 0)
            return Length(s) + 1;
        long n = 0;
        int pos = 0;
        while ((pos = s.IndexOf(sub, pos, StringComparison.Ordinal)) >= 0)
        {
            n++;
            pos += sub.Length;
        }
        return n;
    }

    public static string Center(string s, long width, string fill, int align)
    {
        long length = Length(s);
        if (width <= length)
            return s;
        long pad = width - length;
        // Python's center puts the extra character on the left when the padding is odd and the width is odd.
        long left = align switch { < 0 => 0, > 0 => pad, _ => pad / 2 + (pad & width & 1) };
        long right = pad - left;
        var sb = new StringBuilder();
        for (long i = 0; i < left; i++)
            sb.Append(fill);
        sb.Append(s);
        for (long i = 0; i < right; i++)
            sb.Append(fill);
        return sb.ToString();
    }

    public static bool All(string s, Func<int, bool> predicate)
    {
        var cps = CodePoints(s);
        return cps.Count > 0 && cps.All(predicate);
    }

    public static bool IsAlpha(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter
        or UnicodeCategory.OtherLetter;

    public static bool IsDecimal(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.DecimalDigitNumber;

    public static bool IsDigit(int cp) => IsDecimal(cp)
        || (CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.OtherNumber && NumericValue(cp) is >= 0 and <= 9 and var v && v == Math.Floor(v));

    public static bool IsNumeric(int cp) => IsDecimal(cp) || CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.LetterNumber
        or UnicodeCategory.OtherNumber || (CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.OtherLetter && NumericValue(cp) >= 0);

    private static double NumericValue(int cp) => IsScalar(cp) ? Rune.GetNumericValue(new Rune(cp)) : -1;
}
