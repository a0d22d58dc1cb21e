namespace Pipeline.Kernels.Cpu;

/// <summary>A compile-time int (a bit width, a token count): each struct is its own JIT instantiation, so loops over it unroll.</summary>
internal interface IConstant
{
    static abstract int Value { get; }
}

internal readonly struct One : IConstant { public static int Value => 1; }

internal readonly struct Two : IConstant { public static int Value => 2; }

internal readonly struct Three : IConstant { public static int Value => 3; }

internal readonly struct Four : IConstant { public static int Value => 4; }

internal readonly struct Five : IConstant { public static int Value => 5; }

internal readonly struct Six : IConstant { public static int Value => 6; }

internal readonly struct Seven : IConstant { public static int Value => 7; }

internal readonly struct Eight : IConstant { public static int Value => 8; }
