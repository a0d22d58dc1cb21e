using Akka.Configuration;

namespace Pipeline.Actors.Hosting;

/// <summary>The default configuration: config/akka.hocon, embedded in this assembly.</summary>
public static class PipelineConfig
{
    private static readonly Lazy<string> s_text = new(() =>
    {
        using var stream = typeof(PipelineConfig).Assembly.GetManifestResourceStream("Pipeline.Actors.akka.hocon")
            ?? throw new InvalidOperationException("the embedded resource Pipeline.Actors.akka.hocon (config/akka.hocon) is missing from Pipeline.Actors");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    /// <summary>The text of config/akka.hocon.</summary>
    public static string DefaultHocon => s_text.Value;

    /// <summary>config/akka.hocon parsed, with <paramref name="overrides"/> (HOCON text) taking precedence.</summary>
    public static Config Load(string? overrides = null)
    {
        var defaults = ConfigurationFactory.ParseString(DefaultHocon);
        return string.IsNullOrWhiteSpace(overrides) ? defaults : ConfigurationFactory.ParseString(overrides).WithFallback(defaults);
    }
}
