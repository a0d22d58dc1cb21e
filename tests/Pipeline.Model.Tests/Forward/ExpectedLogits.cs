using System.IO.Compression;
using System.Text.Json;
using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.Forward;

/// <summary>One expected-logits file of tests/fixtures/gemma4-tiny-a/expected (layout in SHARED-README.md).</summary>
internal sealed record ExpectedFile(string Name, int[] ProbeIds, IReadOnlyList<ExpectedSequence> Sequences)
{
    public static readonly Lazy<ExpectedFile> Reference = new(() => Load("reference-f32"));
    public static readonly Lazy<ExpectedFile> LlamaCpp = new(() => Load("llamacpp"));

    public static string Folder => Path.Combine(CheckpointFixtures.RepoRoot, "tests", "fixtures", "gemma4-tiny-a", "expected");

    public ExpectedSequence Sequence(string name) => Sequences.Single(s => s.Name == name);

    private static ExpectedFile Load(string name)
    {
        using var file = File.OpenRead(Path.Combine(Folder, name + ".json.gz"));
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var document = JsonDocument.Parse(gzip);
        var root = document.RootElement;
        var sequences = root.GetProperty("sequences").EnumerateArray().Select(s => new ExpectedSequence(
            s.GetProperty("name").GetString()!,
            Ints(s.GetProperty("ids")),
            s.GetProperty("positions").EnumerateArray().Select(Position).ToArray(),
            s.GetProperty("greedy").EnumerateArray().Select(g => new ExpectedGreedyStep(
                g.GetProperty("token").GetInt32(),
                g.GetProperty("margin").GetDouble(),
                g.TryGetProperty("next", out var next) ? Position(next) : null)).ToArray(),
            s.TryGetProperty("last_logits_bin", out var bin) && bin.ValueKind == JsonValueKind.String ? bin.GetString() : null)).ToArray();
        return new ExpectedFile(name, Ints(root.GetProperty("probe_ids")), sequences);
    }

    private static ExpectedPosition Position(JsonElement p) => new(
        p.GetProperty("top").EnumerateArray().Select(pair => (pair[0].GetInt32(), pair[1].GetSingle())).ToArray(),
        p.GetProperty("lse").GetDouble(),
        p.GetProperty("probe").EnumerateArray().Select(v => v.GetSingle()).ToArray());

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(v => v.GetInt32()).ToArray();
}

internal sealed record ExpectedSequence(string Name, int[] Ids, ExpectedPosition[] Positions, ExpectedGreedyStep[] Greedy, string? LastLogitsBin)
{
    public float[] LastLogits()
    {
        var bytes = File.ReadAllBytes(Path.Combine(ExpectedFile.Folder, LastLogitsBin!));
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }
}

/// <summary>Logits after one position: the top 16 (id, logit), logsumexp and the logits at the probe ids.</summary>
internal sealed record ExpectedPosition((int Id, float Logit)[] Top, double Lse, float[] Probe)
{
    /// <summary>Largest |logit difference| of <paramref name="logits"/> over the top ids, the probes and the logsumexp.</summary>
    public double MaxDifference(ReadOnlySpan<float> logits, int[] probeIds, double logSumExp)
    {
        double worst = Math.Abs(logSumExp - Lse);
        foreach (var (id, logit) in Top)
            worst = Math.Max(worst, Math.Abs(logits[id] - logit));
        for (int i = 0; i < probeIds.Length; i++)
            worst = Math.Max(worst, Math.Abs(logits[probeIds[i]] - Probe[i]));
        return worst;
    }
}

/// <summary>One greedy step: the argmax token, the top1 - top2 margin, and the logits after feeding the token.</summary>
internal sealed record ExpectedGreedyStep(int Token, double Margin, ExpectedPosition? Next);
