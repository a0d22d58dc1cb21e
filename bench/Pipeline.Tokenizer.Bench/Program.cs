using System.Diagnostics;
using System.Text;
using Pipeline.Tokenizer;
using Pipeline.Tokenizer.Bench;

// Encode throughput on a 10 MB mixed corpus, single thread, Pipeline.Tokenizer side by side with
// Hugging Face's Rust tokenizers through Tokenizers.DotNet, alternating rounds in one process.
// Usage: dotnet run -c Release --project bench/Pipeline.Tokenizer.Bench [-- <megabytes> <rounds>]
int megabytes = args.Length > 0 ? int.Parse(args[0]) : 10;
int rounds = args.Length > 1 ? int.Parse(args[1]) : 3;
string repoRoot = FindRepoRoot();
string gz = Path.Combine(repoRoot, "src", "Tokenizer", "Data", "tokenizer.json.gz");

static double CpuMs() => Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds;

// Cold load in this fresh process (includes JIT), then a warm one.
double cpu0 = CpuMs();
var wall = Stopwatch.StartNew();
var ours = Tokenizer.Load(gz);
Console.WriteLine($"Pipeline load (cold): {wall.ElapsedMilliseconds} ms wall, {CpuMs() - cpu0:F0} ms CPU");
cpu0 = CpuMs();
wall.Restart();
Tokenizer.Load(gz);
Console.WriteLine($"Pipeline load (warm): {wall.ElapsedMilliseconds} ms wall, {CpuMs() - cpu0:F0} ms CPU");

string json = Path.Combine(Path.GetTempPath(), $"pipeline-bench-{Environment.ProcessId}.json");
using (var input = new System.IO.Compression.GZipStream(File.OpenRead(gz), System.IO.Compression.CompressionMode.Decompress))
using (var output = File.Create(json))
    input.CopyTo(output);
cpu0 = CpuMs();
wall.Restart();
using var hf = new Tokenizers.DotNet.Tokenizer(json);
Console.WriteLine($"HF (Tokenizers.DotNet) load: {wall.ElapsedMilliseconds} ms wall, {CpuMs() - cpu0:F0} ms CPU");
File.Delete(json);

var documents = Corpus.Build(repoRoot, ours, megabytes << 20, seed: 1);
long corpusBytes = documents.Sum(d => (long)Encoding.UTF8.GetByteCount(d));
Console.WriteLine($"corpus: {documents.Count} documents, {corpusBytes / 1e6:F2} MB UTF-8");

// Same ids from both on every document (Tokenizers.DotNet always adds <bos>).
int mismatches = documents.Count(d => !hf.Encode(d).Select(i => (int)i).SequenceEqual(ours.Encode(d, addSpecialTokens: true)));
Console.WriteLine($"documents whose ids differ: {mismatches}");

var results = new Dictionary<string, List<(double Wall, double Cpu, long Tokens)>> { ["Pipeline"] = [], ["HF"] = [] };
for (int round = 0; round < rounds; round++)
{
    results["HF"].Add(Measure(() => documents.Sum(d => (long)hf.Encode(d).Length)));
    // A fresh instance each round: its word cache starts empty, as after a restart.
    var fresh = Tokenizer.Load(gz);
    results["Pipeline"].Add(Measure(() => documents.Sum(d => (long)fresh.Encode(d, addSpecialTokens: true).Length)));
}
foreach (var (name, runs) in results)
{
    foreach (var (w, c, t) in runs)
    {
        Console.WriteLine($"{name,-9} wall {w,7:F0} ms: {corpusBytes / 1e6 / (w / 1e3),6:F2} MB/s {t / (w / 1e3) / 1e6,5:F2} M tok/s | " +
            $"CPU {c,7:F0} ms: {corpusBytes / 1e6 / (c / 1e3),6:F2} MB/s {t / (c / 1e3) / 1e6,5:F2} M tok/s ({t} tokens)");
    }
}
double best(string name) => results[name].Min(r => r.Wall);
double bestCpu(string name) => results[name].Min(r => r.Cpu);
Console.WriteLine($"speed-up (best wall): {best("HF") / best("Pipeline"):F2}x; (best CPU): {bestCpu("HF") / bestCpu("Pipeline"):F2}x");
return 0;

static (double Wall, double Cpu, long Tokens) Measure(Func<long> run)
{
    GC.Collect();
    double cpu = CpuMs();
    var sw = Stopwatch.StartNew();
    long tokens = run();
    return (sw.Elapsed.TotalMilliseconds, CpuMs() - cpu, tokens);
}

static string FindRepoRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
            return dir.FullName;
    }
    throw new InvalidOperationException("run from inside the repository");
}
