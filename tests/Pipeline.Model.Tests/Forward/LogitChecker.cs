namespace Pipeline.Model.Tests.Forward;

/// <summary>
/// Compares our logits at each position of one sequence with both expected files and remembers the
/// worst difference: llama.cpp within 5e-2 (its GELU table alone costs ~3e-2), the exact f32
/// reference within 5e-3 (summation order only).
/// </summary>
internal sealed class LogitChecker(string sequenceName)
{
    public const double ReferenceTolerance = 5e-3;
    public const double LlamaCppTolerance = 5e-2;

    private readonly ExpectedSequence _reference = ExpectedFile.Reference.Value.Sequence(sequenceName);
    private readonly ExpectedSequence _llamaCpp = ExpectedFile.LlamaCpp.Value.Sequence(sequenceName);
    private readonly int[] _probes = ExpectedFile.Reference.Value.ProbeIds;
    private double _worstReference, _worstLlamaCpp;
    private int _worstReferencePosition = -1, _worstLlamaCppPosition = -1;

    public int[] Ids => _reference.Ids;

    public int Checked { get; private set; }

    /// <summary>Our logits after feeding ids[0..position].</summary>
    public void Check(int position, ReadOnlySpan<float> logits)
    {
        double lse = FastMath.LogSumExp(logits);
        Record(_reference.Positions[position].MaxDifference(logits, _probes, lse), position, ref _worstReference, ref _worstReferencePosition);
        Record(_llamaCpp.Positions[position].MaxDifference(logits, _probes, lse), position, ref _worstLlamaCpp, ref _worstLlamaCppPosition);
        Checked++;
    }

    private static void Record(double difference, int position, ref double worst, ref int worstPosition)
    {
        if (difference > worst || double.IsNaN(difference))
            (worst, worstPosition) = (double.IsNaN(difference) ? double.PositiveInfinity : difference, position);
    }

    public void AssertWithinTolerance(string mode, int expectedChecks)
    {
        Assert.Equal(expectedChecks, Checked);
        Assert.True(_worstReference <= ReferenceTolerance,
            $"{mode}/{sequenceName}: max |diff| vs reference-f32 {_worstReference:E3} at position {_worstReferencePosition}");
        Assert.True(_worstLlamaCpp <= LlamaCppTolerance,
            $"{mode}/{sequenceName}: max |diff| vs llamacpp {_worstLlamaCpp:E3} at position {_worstLlamaCppPosition}");
    }
}
