using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Pipeline.Kernels.Bench -- --filter '*'          (all kernels)
// dotnet run -c Release --project bench/Pipeline.Kernels.Bench -- --filter '*MatVec*'   (one class)
BenchmarkSwitcher.FromAssembly(typeof(Pipeline.Kernels.Bench.QuantizedMatVec).Assembly).Run(args);
