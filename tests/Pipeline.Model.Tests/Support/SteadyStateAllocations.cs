namespace Pipeline.Model.Tests;

/// <summary>
/// Bytes a piece of code allocates on this thread once warmed up. The runtime itself sometimes
/// allocates on the calling thread (on-stack replacement, tiered re-JIT, type loads), and whether that
/// lands in a given window depends on timing, not on our code. So the round is repeated and the
/// smallest count kept: an allocation our code makes recurs in every round and still shows.
/// </summary>
internal static class SteadyStateAllocations
{
    public static long Measure(Action round, int rounds = 4)
    {
        long least = long.MaxValue;
        for (int r = 0; r < rounds; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            round();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}
