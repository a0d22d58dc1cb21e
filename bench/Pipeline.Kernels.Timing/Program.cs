using System.Diagnostics;
using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Timing;
using Pipeline.Model;

// Throwaway-grade timing of Engine prefill and decode on a model folder, with a per-op breakdown of
// the fastest decode step. Not a benchmark of record (that is `pipeline bench`): min of N, noisy machine.
// usage: Pipeline.Kernels.Timing <model dir> [threads=2] [prompt tokens=128] [decode steps=8]
//    or: Pipeline.Kernels.Timing kernels [threads=1] [runs=10] [tokens=1]
//    or: Pipeline.Kernels.Timing small [runs=5] [kinds=q2,q3,q4,bf16] [tokens=2,3,4,8,16]   (small-M vs GEMM kernels, one thread)
//    or: Pipeline.Kernels.Timing int8loop [runs=7] [tokens=1,2,4,8] [shapes=16x5376,4096x5376,21504x5376] [bits=2,3,4]
//          (one thread: clock and instruction rates, then the int8 MatMul per pair of groups and token)
//    or: Pipeline.Kernels.Timing decode16 [runs=10]   (int16 decode kernels, one thread, L2-resident vs streamed)
// PIPELINE_CPU_INT8=1: CpuBackend with int8 activations.
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Pipeline.Kernels.Timing <model dir> [threads] [prompt tokens] [decode steps]");
    return 2;
}
if (args[0] == "decode16")
{
    DecodeKernelTimes.Run(args.Length > 1 ? int.Parse(args[1]) : 10);
    return 0;
}
if (args[0] == "small")
{
    SmallGemmTimes.Run(args.Length > 1 ? int.Parse(args[1]) : 5, args.Length > 2 ? args[2] : "q2,q3,q4,bf16",
                       args.Length > 3 ? args[3].Split(',').Select(int.Parse).ToArray() : [2, 3, 4, 8, 16]);
    return 0;
}
if (args[0] == "int8loop")
{
    (int, int) Shape(string text) => (int.Parse(text.Split('x')[0]), int.Parse(text.Split('x')[1]));
    Int8LoopTimes.Run(args.Length > 1 ? int.Parse(args[1]) : 7, args.Length > 2 ? args[2].Split(',').Select(int.Parse).ToArray() : [1, 2, 4, 8],
                      args.Length > 3 ? args[3].Split(',').Select(Shape).ToArray() : [(16, 5376), (4096, 5376), (21504, 5376)],
                      args.Length > 4 ? args[4].Split(',').Select(int.Parse).ToArray() : [2, 3, 4]);
    return 0;
}
if (args[0] == "kernels")
{
    KernelTimes.Run(args.Length > 1 ? int.Parse(args[1]) : 1, args.Length > 2 ? int.Parse(args[2]) : 10, args.Length > 3 ? int.Parse(args[3]) : 1);
    return 0;
}
string directory = args[0];
int threads = args.Length > 1 ? int.Parse(args[1]) : 2;
int promptTokens = args.Length > 2 ? int.Parse(args[2]) : 128;
int steps = args.Length > 3 ? int.Parse(args[3]) : 8;

var profiler = new ProfilingBackend(new CpuBackend(threads));
using var engine = Engine.Load(directory, new EngineOptions { Backend = profiler, MaxContext = 4096 });
Console.WriteLine($"backend: {engine.Backend.Name}");
long weightBytes = engine.Checkpoint.TotalWeightBytes;
using var session = engine.OpenSession();
var prompt = new int[promptTokens];
var random = new Random(7);
for (int i = 0; i < prompt.Length; i++)
    prompt[i] = random.Next(10, engine.VocabSize);

// Warm the page cache and the JIT.
session.Prefill(prompt.AsSpan(0, Math.Min(8, promptTokens)));
session.Decode(11);
session.Reset();

// Process CPU time next to wall time: on a busy machine wall time mostly measures the neighbours
// (with more than one thread CPU time also counts the pool's spinning).
static double CpuSeconds() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

double bestPrefill = double.MaxValue, bestPrefillCpu = double.MaxValue;
for (int run = 0; run < 2; run++)
{
    session.Reset();
    double cpu0 = CpuSeconds();
    var sw = Stopwatch.StartNew();
    session.Prefill(prompt);
    bestPrefill = Math.Min(bestPrefill, sw.Elapsed.TotalSeconds);
    bestPrefillCpu = Math.Min(bestPrefillCpu, CpuSeconds() - cpu0);
}
Console.WriteLine($"prefill {promptTokens} tokens: {bestPrefill * 1000:F0} ms, {promptTokens / bestPrefill:F1} tok/s; cpu {bestPrefillCpu * 1000:F0} ms (best of 2)");

double bestStep = double.MaxValue, bestStepCpu = double.MaxValue;
Dictionary<string, ProfilingBackend.Entry> bestEntries = [];
for (int step = 0; step < steps; step++)
{
    profiler.Reset();
    profiler.Enabled = true;
    double cpu0 = CpuSeconds();
    var sw = Stopwatch.StartNew();
    session.Decode(100 + step);
    double seconds = sw.Elapsed.TotalSeconds;
    bestStepCpu = Math.Min(bestStepCpu, CpuSeconds() - cpu0);
    profiler.Enabled = false;
    if (seconds < bestStep)
    {
        bestStep = seconds;
        bestEntries = new Dictionary<string, ProfilingBackend.Entry>(profiler.Entries);
    }
}
Console.WriteLine($"decode: {bestStep * 1000:F1} ms/token, {1 / bestStep:F2} tok/s, {weightBytes / bestStep / 1e9:F1} GB/s of checkpoint bytes; cpu {bestStepCpu * 1000:F1} ms/token (best of {steps})");
foreach (var (name, e) in bestEntries.OrderByDescending(kv => kv.Value.Ticks))
{
    double ms = e.Ticks * 1000.0 / Stopwatch.Frequency;
    string rate = e.Bytes > 0 ? $"  {e.Bytes / (ms / 1000) / 1e9:F1} GB/s" : "";
    Console.WriteLine($"  {name,-34} {e.Calls,4} calls {ms,8:F2} ms{rate}");
}
return 0;
