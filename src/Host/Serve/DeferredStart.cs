using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Pipeline.Host.Serve;

/// <summary>
/// Wraps a hosted service (the actor system's) so that it starts in the background once the model has
/// loaded, instead of blocking the host's start (and so Kestrel's) for the whole load. A failed start
/// stops the application; <see cref="ModelHolder.Failure"/> then says why.
/// </summary>
public sealed class DeferredStart(IHostedService inner, ModelHolder holder, IHostApplicationLifetime lifetime, ILogger<DeferredStart> logger) : IHostedService
{
    private Task _started = Task.CompletedTask;

    /// <summary>Replaces the hosted services registered at or after <paramref name="from"/> with deferred ones.</summary>
    public static void Defer(IServiceCollection services, int from)
    {
        for (int i = from; i < services.Count; i++)
        {
            var descriptor = services[i];
            if (descriptor.ServiceType != typeof(IHostedService) || descriptor.IsKeyedService)
                continue;
            services[i] = ServiceDescriptor.Singleton<IHostedService>(provider => new DeferredStart(
                Create(descriptor, provider),
                provider.GetRequiredService<ModelHolder>(),
                provider.GetRequiredService<IHostApplicationLifetime>(),
                provider.GetRequiredService<ILogger<DeferredStart>>()));
        }
    }

    private static IHostedService Create(ServiceDescriptor descriptor, IServiceProvider provider) =>
        (IHostedService)(descriptor.ImplementationInstance
            ?? descriptor.ImplementationFactory?.Invoke(provider)
            ?? ActivatorUtilities.CreateInstance(provider, descriptor.ImplementationType!));

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _started = Task.Run(async () =>
        {
            try
            {
                await holder.Model;
                await inner.StartAsync(lifetime.ApplicationStopping);
                holder.MarkStarted();
            }
            catch (Exception e)
            {
                holder.MarkFailed(e);
                logger.LogError("the pipeline could not start: {Message}", e.Message);
                // Stopping while the host is still starting would cancel Kestrel's start: stop once it has.
                lifetime.ApplicationStarted.Register(lifetime.StopApplication);
            }
        }, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _started;
        if (holder.Started)
            await inner.StopAsync(cancellationToken);
    }
}
