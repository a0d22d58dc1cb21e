using System.IO.Compression;
using System.Text;
using Pipeline.Tokenizer.Templates;

namespace Pipeline.Tokenizer.Tests.Templates;

public class PyStrTests
{
    [Fact]
    public void CaseMappingsMatchPythonForEveryCasedCodePoint()
    {
        using var file = File.OpenRead(Path.Combine(TemplateFixtures.JinjaFixtures, "case_mappings.tsv.gz"));
        using var reader = new StreamReader(new GZipStream(file, CompressionMode.Decompress), Encoding.ASCII);
        int checkedCount = 0;
        var mismatches = new List<string>();
        while (reader.ReadLine() is { } line)
        {
            var fields = line.Split('\t');
            string c = char.ConvertFromUtf32(Convert.ToInt32(fields[0], 16));
            string[] expected = [.. fields.Skip(1).Select(Decode)];
            string[] actual = [PyStr.Upper(c), PyStr.Lower(c), PyStr.Title(c)];
            if (!expected.SequenceEqual(actual))
                mismatches.Add(fields[0]);
            checkedCount++;
        }
        Assert.True(checkedCount > 2500, $"only {checkedCount} code points checked");
        Assert.True(mismatches.Count == 0, "mismatching code points: " + string.Join(",", mismatches.Take(20)));

        static string Decode(string hex) => string.Concat(hex.Split(' ').Select(h => char.ConvertFromUtf32(Convert.ToInt32(h, 16))));
    }

    [Theory]
    [InlineData("ΣΑΣ ΟΔΟΣ", "σας οδος")]
    [InlineData("Σ", "σ")]
    [InlineData("AΣ.B", "aσ.b")]
    [InlineData("AΣ.", "aς.")]
    [InlineData("İ", "i\u0307")]
    public void LowerHandlesFinalSigmaAndExpansions(string input, string expected) => Assert.Equal(expected, PyStr.Lower(input));

    [Theory]
    [InlineData("straße", "STRASSE")]
    [InlineData("ﬁx", "FIX")]
    [InlineData("ı", "I")]
    public void UpperUsesFullMappings(string input, string expected) => Assert.Equal(expected, PyStr.Upper(input));

    [Theory]
    [InlineData("\u001c\u001d\u001e\u001f\u0085 x \u00a0\u3000", "x")]
    [InlineData("\ufeffx\ufeff", "\ufeffx\ufeff")]
    [InlineData("\u200bx", "\u200bx")]
    public void StripMatchesPythonWhitespace(string input, string expected) => Assert.Equal(expected, PyStr.Strip(input, null));

    [Fact]
    public void IndexingCountsCodePoints()
    {
        Assert.Equal(3, PyStr.Length("a😀b"));
        Assert.Equal(["a", "😀", "b"], PyStr.Chars("a😀b").Cast<string>());
        // U+FFFD sorts after U+10000 in UTF-16 order but before it by code point, as Python compares.
        Assert.True(PyStr.CompareCodePoints("\uFFFD", "😀") < 0);
    }

    [Theory]
    [InlineData(1.0, "1.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(-0.0, "-0.0")]
    [InlineData(123456789.125, "123456789.125")]
    [InlineData(1.5e-300, "1.5e-300")]
    [InlineData(double.PositiveInfinity, "inf")]
    public void FloatReprMatchesPython(double value, string expected) => Assert.Equal(expected, Py.FloatRepr(value));
}
