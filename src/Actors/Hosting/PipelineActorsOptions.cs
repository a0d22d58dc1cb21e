using Pipeline.Actors.Sessions;

namespace Pipeline.Actors.Hosting;

/// <summary>What a host tells <see cref="PipelineHostingExtensions.AddPipelineActors"/>.</summary>
public sealed class PipelineActorsOptions
{
    /// <summary>Actor system name.</summary>
    public string ActorSystemName { get; set; } = "pipeline";

    /// <summary>HOCON layered over config/akka.hocon (e.g. "pipeline.layer-groups = 2").</summary>
    public string? Hocon { get; set; }

    /// <summary>Session store; null = <see cref="InMemorySessionStore"/>.</summary>
    public ISessionStore? SessionStore { get; set; }
}
