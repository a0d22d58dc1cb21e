using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Pipeline.Actors;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;

namespace Pipeline.Host.Serve;

/// <summary>
/// How the server gets its model: a loader run in the background at start-up. The server owns what it
/// returns (the service provider disposes the model once the actors have used it).
/// </summary>
public sealed record ModelSource(Func<CancellationToken, Task<PipelineModel>> Load);

/// <summary>
/// Loads the model in the background while Kestrel already answers (/health says 503 until the
/// actors run on it). The actor system's start waits on <see cref="Model"/>.
/// </summary>
public sealed class ModelHolder(ModelSource source, PipelineStartup startup, ILogger<ModelHolder> logger) : IHostedService
{
    private readonly TaskCompletionSource<PipelineModel> _model = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>Completes when the model is loaded (faults when loading failed).</summary>
    public Task<PipelineModel> Model => _model.Task;

    /// <summary>The client once the model is loaded and the actors have started; else null.</summary>
    public PipelineClient? Client => startup.Client.IsCompletedSuccessfully ? startup.Client.Result : null;

    private volatile Exception? _failure;
    private volatile bool _started;

    /// <summary>Why loading the model or starting the actors failed, or null.</summary>
    public string? Failure => _failure?.Message;

    /// <summary>The actor system runs on the model.</summary>
    public bool Started => _started;

    internal void MarkStarted() => _started = true;

    internal void MarkFailed(Exception e) => _failure = e;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _ = Task.Run(async () =>
        {
            var clock = Stopwatch.StartNew();
            logger.LogInformation("loading the model...");
            try
            {
                var model = await source.Load(_stopping.Token);
                logger.LogInformation("model {Name} loaded in {Seconds:F1} s ({Layers} layers, hidden {Hidden}, context {Context})",
                    model.Name, clock.Elapsed.TotalSeconds, model.Text.NumHiddenLayers, model.Text.HiddenSize, model.Text.MaxPositionEmbeddings);
                _model.TrySetResult(model);
            }
            catch (Exception e)
            {
                logger.LogError("loading the model failed: {Message}", e.Message);
                _failure = e;
                _model.TrySetException(e);
            }
        }, CancellationToken.None);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    /// <summary>
    /// Called after the host stopped: a model the actors never started on is not known to the service
    /// provider, so it is disposed here.
    /// </summary>
    public void Release()
    {
        if (!_started && _model.Task.IsCompletedSuccessfully)
            _model.Task.Result.Dispose();
    }
}
