using System.IO.Compression;
using System.Reflection;

namespace Pipeline.Tokenizer;

/// <summary>
/// The Gemma-4 tokenizer files shipped inside this assembly (Data/, under the Gemma Terms of Use
/// stated in NOTICE.md), so the default run needs no files on disk.
/// </summary>
public static class GemmaTokenizerData
{
    private const string Prefix = "Pipeline.Tokenizer.Data.";

    /// <summary>tokenizer.json, decompressed on the fly from the embedded tokenizer.json.gz.</summary>
    public static Stream OpenTokenizerJson() => new GZipStream(OpenResource("tokenizer.json.gz"), CompressionMode.Decompress);

    /// <summary>The Gemma-4-31B-it chat template (chat_template.jinja).</summary>
    public static string ReadChatTemplate() => ReadText("chat_template.jinja");

    public static string ReadTokenizerConfigJson() => ReadText("tokenizer_config.json");

    public static string ReadGenerationConfigJson() => ReadText("generation_config.json");

    /// <summary>Provenance and the Gemma Terms of Use notice that must travel with the data.</summary>
    public static string ReadNotice() => ReadText("NOTICE.md");

    private static string ReadText(string name)
    {
        using var reader = new StreamReader(OpenResource(name));
        return reader.ReadToEnd();
    }

    private static Stream OpenResource(string name) =>
        typeof(GemmaTokenizerData).Assembly.GetManifestResourceStream(Prefix + name)
        ?? throw new InvalidOperationException($"Embedded resource '{Prefix + name}' is missing from {typeof(GemmaTokenizerData).Assembly.GetName().Name}.");
}
