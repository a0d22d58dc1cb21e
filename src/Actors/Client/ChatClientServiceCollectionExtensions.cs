using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;

namespace Pipeline.Actors.Client;

/// <summary>Registers <see cref="PipelineChatClient"/> as the host's <see cref="IChatClient"/>.</summary>
public static class ChatClientServiceCollectionExtensions
{
    /// <summary>Loads the checkpoint in <paramref name="modelDirectory"/>, runs the actor pipeline on it and registers the chat client.</summary>
    public static IServiceCollection AddPipelineChatClient(this IServiceCollection services, string modelDirectory, Action<PipelineActorsOptions>? configureActors = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDirectory);
        return services.AddPipelineChatClient(o => o.ModelDirectory = modelDirectory, configureActors);
    }

    /// <summary>
    /// Registers <see cref="PipelineChatClient"/> (also as <see cref="IChatClient"/>) on top of
    /// <see cref="PipelineHostingExtensions.AddPipelineActors"/> (added here unless already registered). With
    /// <see cref="PipelineChatClientOptions.ModelDirectory"/> the model is loaded on first use; without it the
    /// services must hold a <see cref="PipelineModel"/>. Resolve the client after the host has started.
    /// </summary>
    public static IServiceCollection AddPipelineChatClient(
        this IServiceCollection services, Action<PipelineChatClientOptions> configure, Action<PipelineActorsOptions>? configureActors = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new PipelineChatClientOptions();
        configure(options);
        if (options.ModelDirectory is { } directory)
            services.AddSingleton(_ => PipelineModel.Load(directory, threads: options.Threads));
        else if (!services.Any(d => d.ServiceType == typeof(PipelineModel)))
            throw new InvalidOperationException("AddPipelineChatClient needs PipelineChatClientOptions.ModelDirectory or a PipelineModel registered before it");
        if (!services.Any(d => d.ServiceType == typeof(PipelineStartup)))
            services.AddPipelineActors(configureActors);
        services.AddSingleton(options);
        services.AddSingleton(provider => new PipelineChatClient(provider.GetRequiredService<PipelineClient>(), options));
        services.AddSingleton<IChatClient>(provider => provider.GetRequiredService<PipelineChatClient>());
        return services;
    }
}
