using System.IO.Compression;
using System.Text.Json;

namespace Pipeline.Kernels.Metal.Tests.Forward;

/// <summary>The parts of tests/fixtures/gemma4-tiny-a/expected/*.json.gz (layout in SHARED-README.md) the forward test reads.</summary>
internal sealed record TinyExpected(int[] ProbeIds, IReadOnlyDictionary<string, TinySequence> Sequences)
{
    public static string Root { get; } = FindRoot();

    public static string Fixture(params string[] parts) => Path.Combine([Root, "tests", "fixtures", "gemma4-tiny-a", .. parts]);

    public static TinyExpected Load(string name)
    {
        using var file = File.OpenRead(Fixture("expected", name + ".json.gz"));
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var document = JsonDocument.Parse(gzip);
        var root = document.RootElement;
        var sequences = root.GetProperty("sequences").EnumerateArray().ToDictionary(
            s => s.GetProperty("name").GetString()!,
            s => new TinySequence(
                Ints(s.GetProperty("ids")),
                s.GetProperty("positions").EnumerateArray().Select(Position).ToArray(),
                s.GetProperty("greedy").EnumerateArray().Select(g => new TinyGreedyStep(
                    g.GetProperty("token").GetInt32(), g.GetProperty("margin").GetDouble(),
                    g.TryGetProperty("next", out var next) ? Position(next) : null)).ToArray(),
                s.TryGetProperty("last_logits_bin", out var bin) && bin.ValueKind == JsonValueKind.String ? bin.GetString() : null));
        return new TinyExpected(Ints(root.GetProperty("probe_ids")), sequences);
    }

    private static TinyPosition Position(JsonElement p) => new(
        p.GetProperty("top").EnumerateArray().Select(pair => (pair[0].GetInt32(), pair[1].GetSingle())).ToArray(),
        p.GetProperty("lse").GetDouble(),
        p.GetProperty("probe").EnumerateArray().Select(v => v.GetSingle()).ToArray());

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(v => v.GetInt32()).ToArray();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No pipeline.sln above {AppContext.BaseDirectory}");
    }
}

internal sealed record TinySequence(int[] Ids, TinyPosition[] Positions, TinyGreedyStep[] Greedy, string? LastLogitsBin)
{
    public float[] LastLogits()
    {
        var bytes = File.ReadAllBytes(TinyExpected.Fixture("expected", LastLogitsBin!));
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }
}

/// <summary>Logits after one position: top 16 (id, logit), logsumexp, logits at the probe ids.</summary>
internal sealed record TinyPosition((int Id, float Logit)[] Top, double Lse, float[] Probe)
{
    public double MaxDifference(ReadOnlySpan<float> logits, int[] probeIds)
    {
        double worst = Math.Abs(LogSumExp(logits) - Lse);
        foreach (var (id, logit) in Top)
            worst = Math.Max(worst, Math.Abs(logits[id] - logit));
        for (int i = 0; i < probeIds.Length; i++)
            worst = Math.Max(worst, Math.Abs(logits[probeIds[i]] - Probe[i]));
        return worst;
    }

    public static double LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = float.NegativeInfinity;
        foreach (float v in logits)
            max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits)
            sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }
}

internal sealed record TinyGreedyStep(int Token, double Margin, TinyPosition? Next);
