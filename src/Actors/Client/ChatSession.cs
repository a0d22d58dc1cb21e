using System.Runtime.CompilerServices;
using System.Text;
using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;
using Pipeline.Actors.Messages;

namespace Pipeline.Actors.Client;

/// <summary>What <see cref="ChatSession.LoadAsync"/> starts.</summary>
public sealed record ChatSessionOptions
{
    /// <summary>CPU threads for the backend (0 = all cores).</summary>
    public int Threads { get; init; }

    /// <summary>HOCON layered over the pipeline's config/akka.hocon (e.g. "pipeline.layer-groups = 2").</summary>
    public string? Hocon { get; init; }

    /// <summary>The first system prompt.</summary>
    public string? System { get; init; }
}

/// <summary>
/// One conversation with the model, on the actor pipeline: each <see cref="SendStreamAsync(string, SendOptions?, CancellationToken)"/>
/// is a turn of the same session, so turn 2 computes only what turn 1 did not (the session's KV cache is reused).
/// One turn at a time. Either owns a model and actor system (<see cref="LoadAsync"/>) or rides on a
/// host's <see cref="PipelineClient"/> (<see cref="Attach"/>).
/// </summary>
public sealed class ChatSession : IAsyncDisposable
{
    private readonly PipelineClient _client;
    private readonly ActorSystem? _ownedSystem;
    private readonly PipelineModel? _ownedModel;
    private string? _system;
    private bool _started;
    private int _busy;
    private bool _disposed;

    private const string QuietLogging = "akka.loglevel = WARNING\nakka.stdout-loglevel = WARNING\n";

    private ChatSession(PipelineClient client, string sessionId, string? system, ActorSystem? ownedSystem, PipelineModel? ownedModel)
    {
        _client = client;
        SessionId = sessionId;
        _system = system;
        _ownedSystem = ownedSystem;
        _ownedModel = ownedModel;
    }

    /// <summary>Loads the checkpoint in <paramref name="modelDirectory"/> and starts its own actor system for this session.</summary>
    public static async Task<ChatSession> LoadAsync(string modelDirectory, ChatSessionOptions? options = null, CancellationToken cancellation = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDirectory);
        options ??= new ChatSessionOptions();
        // Opening the checkpoint maps files and builds the backend: keep it off the caller's thread.
        var model = await Task.Run(() => PipelineModel.Load(modelDirectory, threads: options.Threads), cancellation).ConfigureAwait(false);
        ActorSystem? system = null;
        try
        {
            // An embedded session keeps Akka's informational logging off the caller's console.
            system = ActorSystem.Create("chat-session", PipelineConfig.Load(QuietLogging + options.Hocon));
            var actorSystem = system;
            var client = await Task.Run(() => PipelineClient.Start(actorSystem, model), cancellation).ConfigureAwait(false);
            return new ChatSession(client, NewSessionId(), options.System, system, model);
        }
        catch
        {
            if (system is not null)
                await system.Terminate().ConfigureAwait(false);
            model.Dispose();
            throw;
        }
    }

    /// <summary>A session on an existing pipeline (a host's); disposing it ends the conversation, not the pipeline.</summary>
    public static ChatSession Attach(PipelineClient client, string? sessionId = null, string? system = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        return new ChatSession(client, sessionId ?? NewSessionId(), system, null, null);
    }

    /// <summary>The conversation's id in the pipeline; changes on <see cref="Reset"/>.</summary>
    public string SessionId { get; private set; }

    public PipelineClient Client => _client;

    /// <summary>
    /// The system prompt. It leads the conversation, so changing it after the first turn starts a new
    /// conversation (as <see cref="Reset"/> does).
    /// </summary>
    public string? System
    {
        get => _system;
        set
        {
            if (_system == value)
                return;
            if (_started)
                Reset();
            _system = value;
        }
    }

    /// <summary>Forgets the conversation (its cache is freed); the next turn starts a new one with the same system prompt.</summary>
    public void Reset()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Volatile.Read(ref _busy) != 0)
            throw new InvalidOperationException($"session '{SessionId}' is answering; cancel the turn before resetting");
        if (_started)
            _client.SessionManager.Tell(new EndSession(MessageHeader.Create(), SessionId), ActorRefs.NoSender);
        SessionId = NewSessionId();
        _started = false;
    }

    /// <summary>Sends a user message and streams the answer; the last event has <see cref="ChatStreamEvent.Done"/> set.</summary>
    /// <exception cref="OperationCanceledException">when <paramref name="cancellation"/> ends the turn (what was streamed stays in the conversation).</exception>
    /// <exception cref="TurnFailedException">when the pipeline refuses or fails the turn.</exception>
    public IAsyncEnumerable<ChatStreamEvent> SendStreamAsync(string prompt, SendOptions? options = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new SendOptions();
        var message = new ChatMessage { Role = ChatMessage.User, Content = prompt, Images = options.Images is { Count: > 0 } ? options.Images : null };
        return SendStreamAsync([message], options, cancellation);
    }

    /// <summary>
    /// Sends any messages as one turn (e.g. tool results answering the previous turn's tool calls) and
    /// streams the answer. The system prompt is put in front on the conversation's first turn.
    /// </summary>
    public async IAsyncEnumerable<ChatStreamEvent> SendStreamAsync(
        IReadOnlyList<ChatMessage> messages, SendOptions? options = null, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed, this);
        options ??= new SendOptions();
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException($"session '{SessionId}' is already answering; one turn at a time");
        try
        {
            var turn = new List<ChatMessage>(messages.Count + 1);
            if (!_started && !string.IsNullOrEmpty(_system))
                turn.Add(ChatMessage.FromSystem(_system));
            turn.AddRange(messages);
            var request = new TurnRequest { SessionId = SessionId, Messages = turn, Options = options.ToGenerationOptions() };
            _started = true;

            var toolCalls = new List<ToolCall>();
            await foreach (var e in _client.StreamTurnAsync(request, cancellation).ConfigureAwait(false))
            {
                switch (e)
                {
                    case TextDelta t:
                        yield return new ChatStreamEvent { Text = t.Text };
                        break;
                    case ReasoningDelta r:
                        yield return new ChatStreamEvent { Text = r.Text, IsReasoning = true };
                        break;
                    case ToolCallEvent c:
                        toolCalls.Add(c.Call);
                        break;
                    case TurnFinished f when f.Reason == FinishReason.Cancelled:
                        throw new OperationCanceledException($"turn of session '{SessionId}' was cancelled", cancellation);
                    case TurnFinished f when f.Reason == FinishReason.Error:
                        throw new TurnFailedException(SessionId, f.Error ?? "unknown error");
                    case TurnFinished f:
                        yield return ChatStreamEvent.Final(f, toolCalls);
                        break;
                }
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Sends a user message and waits for the whole answer.</summary>
    public async Task<ChatReply> SendAsync(string prompt, SendOptions? options = null, CancellationToken cancellation = default)
    {
        var text = new StringBuilder();
        var reasoning = new StringBuilder();
        ChatStreamEvent? final = null;
        await foreach (var e in SendStreamAsync(prompt, options, cancellation).ConfigureAwait(false))
        {
            if (e.Done)
                final = e;
            else
                (e.IsReasoning ? reasoning : text).Append(e.Text);
        }
        return new ChatReply(text.ToString(), reasoning.ToString(), final!.ToolCalls, final);
    }

    /// <summary>The conversation so far, as the pipeline holds it.</summary>
    public Task<IReadOnlyList<ChatMessage>> GetTranscriptAsync() => _client.GetTranscriptAsync(SessionId);

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (_started && _ownedSystem is null)
            await _client.EndSessionAsync(SessionId).ConfigureAwait(false);
        if (_ownedSystem is not null)
            await _ownedSystem.Terminate().ConfigureAwait(false);
        _ownedModel?.Dispose();
    }

    private static string NewSessionId() => "chat-" + Guid.NewGuid().ToString("N");
}
