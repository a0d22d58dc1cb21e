using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json;
using Pipeline.Tokenizer;
static double Cpu() => Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds;
for (int i = 0; i < 4; i++)
{
    double c0 = Cpu();
    var ms = new MemoryStream();
    using (var gz = new GZipStream(File.OpenRead("/work/wt-tokenizer/src/Tokenizer/Data/tokenizer.json.gz"), CompressionMode.Decompress)) gz.CopyTo(ms);
    double c1 = Cpu();
    var reader = new Utf8JsonReader(ms.GetBuffer().AsSpan(0, (int)ms.Length));
    int n = 0; while (reader.Read()) n++;
    double c2 = Cpu();
    reader = new Utf8JsonReader(ms.GetBuffer().AsSpan(0, (int)ms.Length));
    var strings = new List<string>();
    char[] buf = new char[256];
    while (reader.Read()) if (reader.TokenType == JsonTokenType.String) reader.CopyString(buf);
    double c3 = Cpu();
    var tok = Tokenizer.Load("/work/wt-tokenizer/src/Tokenizer/Data/tokenizer.json.gz");
    double c4 = Cpu();
    Console.WriteLine($"gunzip {c1 - c0:F0} json-tokens {c2 - c1:F0} copystrings {c3 - c2:F0} load {c4 - c3:F0}  ({n} tokens)");
}
