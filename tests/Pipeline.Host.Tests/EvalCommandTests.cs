using System.CommandLine;
using System.IO.Compression;
using System.Text.Json;
using Pipeline.Host.Commands;

namespace Pipeline.Host.Tests;

/// <summary>`pipeline eval` against the tiny-a fixture's exact f32 reference.</summary>
public sealed class EvalCommandTests
{
    private static readonly string Fixtures = Path.Combine(RepoRoot(), "tests", "fixtures", "gemma4-tiny-a");

    [Theory]
    [InlineData("prefill")]
    [InlineData("stepwise")]
    public void Json_ListsEveryPositionsTopLogitsAndLogSumExp(string mode)
    {
        var (ids, positions) = ReferenceSequence("text_short");
        using var output = new StringWriter();
        int exitCode = Invoke(["eval", "--model", Path.Combine(Fixtures, "ud-q2kxl"), "--ids", string.Join(",", ids), "--json", "--mode", mode], output, TextWriter.Null);
        Assert.Equal(0, exitCode);

        using var document = JsonDocument.Parse(output.ToString());
        var reports = document.RootElement.EnumerateArray().ToArray();
        Assert.Equal(ids.Length, reports.Length);
        for (int pos = 0; pos < ids.Length; pos++)
        {
            Assert.Equal(pos, reports[pos].GetProperty("pos").GetInt32());
            var top = reports[pos].GetProperty("top").EnumerateArray().Select(p => (Id: p[0].GetInt32(), Logit: p[1].GetSingle())).ToArray();
            Assert.Equal(16, top.Length);
            var expected = positions[pos];
            Assert.Equal(expected.GetProperty("top")[0][0].GetInt32(), top[0].Id);
            for (int i = 0; i < 16; i++)
            {
                Assert.Equal(expected.GetProperty("top")[i][1].GetSingle(), top[i].Logit, 5e-3f);
                Assert.True(i == 0 || top[i].Logit <= top[i - 1].Logit);
            }
            Assert.Equal(expected.GetProperty("lse").GetDouble(), reports[pos].GetProperty("logsumexp").GetDouble(), 5e-3);
        }
    }

    [Fact]
    public void Text_PrintsOneLinePerPosition()
    {
        using var output = new StringWriter();
        Assert.Equal(0, Invoke(["eval", "--model", Path.Combine(Fixtures, "ud-q2kxl"), "--ids", "2, 105,2364", "--top", "3"], output, TextWriter.Null));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("pos 0  logsumexp 16.1546", lines[0]);
        Assert.Contains(" top 130805:12.025", lines[0]);
        Assert.Equal(4, lines[2].Split(':').Length);
    }

    [Theory]
    [InlineData("2,x", "--ids entry 1 is 'x'")]
    [InlineData("2,262144", "token id 262144 at index 1 is outside the vocabulary")]
    [InlineData("", "--ids entry 0 is ''")]
    public void BadIds_FailWithAClearMessage(string ids, string message)
    {
        using var error = new StringWriter();
        Assert.Equal(1, Invoke(["eval", "--model", Path.Combine(Fixtures, "ud-q2kxl"), "--ids", ids], TextWriter.Null, error));
        Assert.Contains(message, error.ToString());
    }

    [Fact]
    public void MissingModel_FailsWithAClearMessage()
    {
        using var error = new StringWriter();
        Assert.Equal(1, Invoke(["eval", "--model", Path.Combine(Fixtures, "nope"), "--ids", "2"], TextWriter.Null, error));
        Assert.Contains("checkpoint folder does not exist", error.ToString());
    }

    [Fact]
    public void ParseIds_AcceptsSpacesAndRejectsGaps()
    {
        Assert.Equal([2, 105, 7], EvalCommand.ParseIds(" 2, 105 ,7"));
        Assert.Contains("entry 1 is ''", Assert.Throws<ArgumentException>(() => EvalCommand.ParseIds("1,,2")).Message);
    }

    private static int Invoke(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand();
        foreach (var command in CommandCatalog.All())
            root.Subcommands.Add(command);
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    private static (int[] Ids, JsonElement[] Positions) ReferenceSequence(string name)
    {
        using var file = File.OpenRead(Path.Combine(Fixtures, "expected", "reference-f32.json.gz"));
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        var root = JsonDocument.Parse(gzip).RootElement;
        var sequence = root.GetProperty("sequences").EnumerateArray().Single(s => s.GetProperty("name").GetString() == name);
        return (sequence.GetProperty("ids").EnumerateArray().Select(v => v.GetInt32()).ToArray(),
                sequence.GetProperty("positions").EnumerateArray().ToArray());
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No pipeline.sln above {AppContext.BaseDirectory}");
    }
}
