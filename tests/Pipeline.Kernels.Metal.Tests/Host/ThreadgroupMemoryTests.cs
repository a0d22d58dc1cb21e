using System.Text.RegularExpressions;

namespace Pipeline.Kernels.Metal.Tests.Host;

/// <summary>
/// Metal allows 32 KB of threadgroup memory per threadgroup; the emulator cannot see the size of a
/// kernel's threadgroup arrays, so this sums every `threadgroup T name[N]` declared in each kernel
/// file (an upper bound for any one kernel of the file) from the MSL source itself.
/// </summary>
public partial class ThreadgroupMemoryTests
{
    private const int MetalLimitBytes = 32 * 1024;

    [GeneratedRegex(@"threadgroup\s+(float|uint|int)\s+\w+\s*\[([^\]]+)\]")]
    private static partial Regex ThreadgroupArray();

    [GeneratedRegex(@"constant\s+constexpr\s+uint\s+(\w+)\s*=\s*(\d+)\s*;")]
    private static partial Regex Constant();

    public static TheoryData<string> Files() => new(MetalKernelSources.Files);

    [Theory]
    [MemberData(nameof(Files))]
    public void ThreadgroupArrays_FitMetalsLimit(string file)
    {
        string source = MetalKernelSources.LibrarySource(file);
        var constants = Constant().Matches(source).ToDictionary(m => m.Groups[1].Value, m => long.Parse(m.Groups[2].Value));
        long bytes = 0;
        foreach (Match m in ThreadgroupArray().Matches(source))
        {
            long elements = 1;
            foreach (string factor in m.Groups[2].Value.Split('*', StringSplitOptions.TrimEntries))
            {
                if (long.TryParse(factor, out long n))
                    elements *= n;
                else if (factor.Split('/', StringSplitOptions.TrimEntries) is [var a, var b] && constants.TryGetValue(a, out long x) && long.TryParse(b, out long y))
                    elements *= x / y;
                else
                    elements *= constants.TryGetValue(factor, out long c) ? c : throw new Xunit.Sdk.XunitException($"{file}: cannot size `{m.Value}`");
            }
            bytes += 4 * elements;
        }
        Assert.True(bytes <= MetalLimitBytes, $"{file} declares {bytes} bytes of threadgroup memory; Metal allows {MetalLimitBytes}");
    }

    [Fact]
    public void TheLargestUsersAreCounted()
    {
        // Sanity of the parser: attention's partial accumulators and top-k's staging are seen.
        var sizes = MetalKernelSources.Files.ToDictionary(f => f, f => ThreadgroupArray().Matches(MetalKernelSources.Read(f)).Count);
        Assert.Equal(3, sizes["Attention.metal"]);
        Assert.Equal(5, sizes["TopK.metal"]);
        Assert.Equal(4, sizes["Matmul.metal"]);   // xs and ws in each of the two kernel macros
    }
}
