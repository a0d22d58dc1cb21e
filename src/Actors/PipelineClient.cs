using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using Akka.Actor;
using Pipeline.Actors.Actors;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Sessions;

namespace Pipeline.Actors;

/// <summary>
/// How callers (the host's HTTP API, the terminal chat, IChatClient, tests) use the actor pipeline.
/// Thread-safe. Sessions are created on first use of their id.
/// </summary>
public sealed class PipelineClient
{
    internal PipelineClient(IActorRef sessionManager, PipelineModel model, PipelineSettings settings, FaultInjector faults, ISessionStore store)
    {
        SessionManager = sessionManager;
        Model = model;
        Settings = settings;
        Faults = faults;
        Store = store;
    }

    /// <summary>Starts the pipeline's actors in <paramref name="system"/> (config from its "pipeline" section).</summary>
    public static PipelineClient Start(ActorSystem system, PipelineModel model, ISessionStore? store = null, string name = "pipeline")
    {
        ArgumentNullException.ThrowIfNull(system);
        ArgumentNullException.ThrowIfNull(model);
        var settings = PipelineSettings.FromConfig(system.Settings.Config);
        settings.ResolveLayerGroups(model.Text.NumHiddenLayers);   // bad ranges fail here, not in an actor
        var faults = settings.Faults.Count > 0 ? new FaultInjector(settings.Faults, settings.FaultSeed) : FaultInjector.None;
        store ??= new InMemorySessionStore();
        var manager = new TaskCompletionSource<IActorRef>(TaskCreationOptions.RunContinuationsAsynchronously);
        var sessionStore = store;
        system.ActorOf(Props.Create(() => new PipelineGuardian(model, settings, sessionStore, faults, manager)), name);
        if (!manager.Task.Wait(TimeSpan.FromSeconds(30)))
            throw new TimeoutException("the pipeline's session manager did not start within 30 s");
        return new PipelineClient(manager.Task.Result, model, settings, faults, store);
    }

    /// <summary>The actor every session message goes to.</summary>
    public IActorRef SessionManager { get; }

    public PipelineModel Model { get; }

    public PipelineSettings Settings { get; }

    /// <summary>Test-only fault injection in effect (counts per role).</summary>
    public FaultInjector Faults { get; }

    public ISessionStore Store { get; }

    /// <summary>
    /// Starts a turn: its events are written to <paramref name="output"/> (bounded channels apply
    /// back-pressure to the session), ending with one <see cref="TurnFinished"/>, after which the
    /// writer is completed. Cancelling <paramref name="cancellation"/> stops the turn within one step.
    /// </summary>
    public void StartTurn(TurnRequest request, ChannelWriter<ChatEvent> output, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(output);
        SessionManager.Tell(new StartTurn(MessageHeader.Create(), request, output, cancellation), ActorRefs.NoSender);
    }

    /// <summary>Streams a turn's events through a bounded channel of <paramref name="capacity"/>.</summary>
    public async IAsyncEnumerable<ChatEvent> StreamTurnAsync(
        TurnRequest request, [EnumeratorCancellation] CancellationToken cancellation = default, int capacity = 64)
    {
        var channel = Channel.CreateBounded<ChatEvent>(new BoundedChannelOptions(capacity) { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        StartTurn(request, channel.Writer, stop.Token);
        try
        {
            await foreach (var e in channel.Reader.ReadAllAsync(CancellationToken.None))
                yield return e;
        }
        finally
        {
            // A consumer that stops early cancels the turn.
            stop.Cancel();
        }
    }

    /// <summary>Runs a turn to its end and collects its events.</summary>
    public async Task<TurnResult> RunTurnAsync(TurnRequest request, CancellationToken cancellation = default)
    {
        var events = new List<ChatEvent>();
        await foreach (var e in StreamTurnAsync(request, cancellation))
            events.Add(e);
        return TurnResult.From(events);
    }

    public async Task<IReadOnlyList<ChatMessage>> GetTranscriptAsync(string sessionId, TimeSpan? timeout = null)
    {
        var reply = await SessionManager.Ask<TranscriptReply>(new GetTranscript(MessageHeader.Create(), sessionId), timeout ?? TimeSpan.FromSeconds(30));
        return reply.Messages;
    }

    /// <summary>Ends a conversation: its actor stops, its cache is freed and its transcript deleted.</summary>
    public Task EndSessionAsync(string sessionId, TimeSpan? timeout = null) =>
        SessionManager.Ask<SessionEnded>(new EndSession(MessageHeader.Create(), sessionId), timeout ?? TimeSpan.FromSeconds(30));
}

/// <summary>A finished turn's events, with the text, reasoning and tool calls put together.</summary>
public sealed record TurnResult(string Text, string Reasoning, IReadOnlyList<ToolCall> ToolCalls, TurnFinished Finished, IReadOnlyList<ChatEvent> Events)
{
    public static TurnResult From(IReadOnlyList<ChatEvent> events)
    {
        var text = new StringBuilder();
        var reasoning = new StringBuilder();
        var calls = new List<ToolCall>();
        TurnFinished? finished = null;
        foreach (var e in events)
        {
            switch (e)
            {
                case TextDelta t:
                    text.Append(t.Text);
                    break;
                case ReasoningDelta r:
                    reasoning.Append(r.Text);
                    break;
                case ToolCallEvent c:
                    calls.Add(c.Call);
                    break;
                case TurnFinished f:
                    finished = f;
                    break;
            }
        }
        return new TurnResult(text.ToString(), reasoning.ToString(), calls,
            finished ?? throw new InvalidOperationException("the turn's events ended without TurnFinished"), events);
    }
}
