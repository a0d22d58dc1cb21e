using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Pipeline.Kernels.Metal.Tests.Host;

/// <summary>The C# parameter structs mirror the MSL ones field by field (name, order, 4-byte type).</summary>
public partial class KernelParamsTests
{
    [GeneratedRegex(@"struct\s+(\w+Params)\s*\{([^}]*)\};")]
    private static partial Regex MslStruct();

    [GeneratedRegex(@"^\s*(uint|int|float)\s+([\w\s,]+);")]
    private static partial Regex MslField();

    public static TheoryData<string> StructNames() => new(MslStructs().Keys);

    private static Dictionary<string, List<(string Type, string Name)>> MslStructs()
    {
        var structs = new Dictionary<string, List<(string, string)>>();
        foreach (string file in MetalKernelSources.Files.Append("Prelude.metal"))
        {
            foreach (Match m in MslStruct().Matches(MetalKernelSources.Read(file)))
            {
                var fields = new List<(string, string)>();
                foreach (string line in m.Groups[2].Value.Split('\n'))
                {
                    var f = MslField().Match(line);
                    if (f.Success)
                        fields.AddRange(f.Groups[2].Value.Split(',').Select(n => (f.Groups[1].Value, n.Trim())));
                }
                structs[m.Groups[1].Value] = fields;
            }
        }
        return structs;
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void CSharpStruct_MatchesMsl(string name)
    {
        var msl = MslStructs()[name];
        var type = typeof(MetalBackend).Assembly.GetType("Pipeline.Kernels.Metal." + name)
            ?? throw new Xunit.Sdk.XunitException($"no C# struct {name} for the MSL struct");
        var fields = type.GetFields(BindingFlags.Instance | BindingFlags.Public).OrderBy(f => Marshal.OffsetOf(type, f.Name)).ToArray();
        Assert.Equal(msl.Count, fields.Length);
        for (int i = 0; i < msl.Count; i++)
        {
            string pascal = string.Concat(msl[i].Name.Split('_').Select(w => char.ToUpperInvariant(w[0]) + w[1..]));
            Assert.Equal(pascal, fields[i].Name);
            Assert.Equal(msl[i].Type == "float" ? typeof(float) : msl[i].Type == "int" ? typeof(int) : typeof(uint), fields[i].FieldType);
            Assert.Equal(4 * i, (int)Marshal.OffsetOf(type, fields[i].Name));
        }
        Assert.Equal(4 * msl.Count, Marshal.SizeOf(type));
    }

    [Fact]
    public void EveryParamsStructIsFound() =>
        Assert.Equal(["AttentionParams", "ElementwiseParams", "EmbedParams", "LinearParams", "NormParams", "RopeParams", "StoreKvParams", "TopKParams"],
            MslStructs().Keys.Order());
}
