using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Sessions;

namespace Pipeline.Actors.Hosting;

/// <summary>Marker type under which the pipeline's session manager is registered in Akka.Hosting's ActorRegistry.</summary>
public sealed class PipelineSessions;

/// <summary>Hands the <see cref="PipelineClient"/> from the actor system's start-up to dependency injection.</summary>
public sealed class PipelineStartup
{
    private readonly TaskCompletionSource<PipelineClient> _client = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the actor system has started the pipeline.</summary>
    public Task<PipelineClient> Client => _client.Task;

    internal void Started(PipelineClient client) => _client.TrySetResult(client);
}

/// <summary>Registers the actor pipeline with Akka.Hosting.</summary>
public static class PipelineHostingExtensions
{
    /// <summary>
    /// Adds an actor system configured by config/akka.hocon (plus <see cref="PipelineActorsOptions.Hocon"/>)
    /// that runs the pipeline on the <see cref="PipelineModel"/> registered in <paramref name="services"/>,
    /// and registers <see cref="ISessionStore"/>, <see cref="PipelineStartup"/> and <see cref="PipelineClient"/>
    /// (resolve the client after the host has started, or await <see cref="PipelineStartup.Client"/>).
    /// </summary>
    public static IServiceCollection AddPipelineActors(this IServiceCollection services, Action<PipelineActorsOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = new PipelineActorsOptions();
        configure?.Invoke(options);
        services.AddSingleton(options.SessionStore ?? new InMemorySessionStore());
        services.AddSingleton<PipelineStartup>();
        services.AddSingleton(provider =>
        {
            var client = provider.GetRequiredService<PipelineStartup>().Client;
            return client.Wait(TimeSpan.FromSeconds(60))
                ? client.Result
                : throw new InvalidOperationException("PipelineClient was resolved before the host started the actor system");
        });
        services.AddAkka(options.ActorSystemName, (builder, provider) => builder.WithPipelineActors(provider, options.Hocon));
        return services;
    }

    /// <summary>
    /// For hosts that configure Akka themselves (services must hold a <see cref="PipelineModel"/>, an
    /// <see cref="ISessionStore"/> and a <see cref="PipelineStartup"/>): adds the pipeline's HOCON and
    /// starts its actors.
    /// </summary>
    public static AkkaConfigurationBuilder WithPipelineActors(this AkkaConfigurationBuilder builder, IServiceProvider provider, string? hocon = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(provider);
        builder.AddHocon(PipelineConfig.DefaultHocon, HoconAddMode.Append);
        if (!string.IsNullOrWhiteSpace(hocon))
            builder.AddHocon(hocon, HoconAddMode.Prepend);
        builder.WithActors((system, registry) =>
        {
            var client = PipelineClient.Start(system, provider.GetRequiredService<PipelineModel>(), provider.GetRequiredService<ISessionStore>());
            registry.Register<PipelineSessions>(client.SessionManager);
            provider.GetRequiredService<PipelineStartup>().Started(client);
        });
        return builder;
    }
}
