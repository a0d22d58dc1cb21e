using System.Runtime.CompilerServices;
using Akka.Actor;
using Microsoft.Extensions.AI;
using Pipeline.Actors.Messages;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Pipeline.Actors.Client;

/// <summary>Settings of <see cref="PipelineChatClient"/> (and of its registration).</summary>
public sealed class PipelineChatClientOptions
{
    /// <summary>Checkpoint folder for <see cref="ChatClientServiceCollectionExtensions.AddPipelineChatClient(Microsoft.Extensions.DependencyInjection.IServiceCollection, Action{PipelineChatClientOptions})"/>; null = a PipelineModel is registered already.</summary>
    public string? ModelDirectory { get; set; }

    /// <summary>CPU threads when the registration loads the model (0 = all cores).</summary>
    public int Threads { get; set; }

    /// <summary>Most tokens per answer when ChatOptions.MaxOutputTokens is not set.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 2048;

    /// <summary>Conversations remembered for prefix matching; beyond this the least recently used idle one is forgotten (and ended, if this client started it).</summary>
    public int MaxConversations { get; set; } = 16;
}

/// <summary>
/// <see cref="IChatClient"/> on the actor pipeline.
/// <para>Conversations: every response carries the pipeline session's id as ConversationId.
/// A call with ChatOptions.ConversationId continues that session: if its messages start with the
/// session's transcript only the rest is added, otherwise all of them are taken as new messages (the
/// Microsoft.Extensions.AI convention for stateful services). A call without one is matched against
/// the conversations this client had: the longest whose transcript is a prefix of the messages (and
/// that is not answering) is continued with the rest, so a caller that resends the whole history still
/// reuses the KV cache; otherwise a new session starts. Reasoning text is not compared (templates drop it).</para>
/// </summary>
public sealed class PipelineChatClient : IChatClient
{
    private readonly PipelineClient _client;
    private readonly PipelineChatClientOptions _options;
    private readonly ChatClientMetadata _metadata;
    private readonly object _gate = new();
    private readonly Dictionary<string, Conversation> _conversations = [];
    private long _clock;

    public PipelineChatClient(PipelineClient client, PipelineChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _options = options ?? new PipelineChatClientOptions();
        _metadata = new ChatClientMetadata("pipeline", null, client.Model.Name);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<AiChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var all = MessageMapping.ToPipeline(messages, options?.Instructions);
        if (all.Count == 0)
            throw new ArgumentException("a chat request needs at least one message", nameof(messages));
        var generation = MessageMapping.ToGenerationOptions(options, _options.DefaultMaxOutputTokens);
        var (sessionId, suffix) = await ClaimConversationAsync(all, options?.ConversationId).ConfigureAwait(false);
        try
        {
            var request = new TurnRequest { SessionId = sessionId, Messages = suffix, Options = generation };
            var created = DateTimeOffset.UtcNow;
            ChatResponseUpdate Update(params AIContent[] contents) => new(ChatRole.Assistant, contents)
            {
                ResponseId = request.TurnId,
                MessageId = request.TurnId,
                ConversationId = sessionId,
                ModelId = _metadata.DefaultModelId,
                CreatedAt = created,
            };

            await foreach (var e in _client.StreamTurnAsync(request, cancellationToken).ConfigureAwait(false))
            {
                switch (e)
                {
                    case TextDelta t:
                        yield return Update(new TextContent(t.Text));
                        break;
                    case ReasoningDelta r:
                        yield return Update(new TextReasoningContent(r.Text));
                        break;
                    case ToolCallEvent c:
                        yield return Update(MessageMapping.ToFunctionCall(c.Call));
                        break;
                    case TurnFinished f when f.Reason == FinishReason.Cancelled:
                        throw new OperationCanceledException($"turn of session '{sessionId}' was cancelled", cancellationToken);
                    case TurnFinished f when f.Reason == FinishReason.Error:
                        throw new TurnFailedException(sessionId, f.Error ?? "unknown error");
                    case TurnFinished f:
                        var usage = new UsageDetails
                        {
                            InputTokenCount = f.Usage.PromptTokens,
                            CachedInputTokenCount = f.Usage.CachedTokens,
                            OutputTokenCount = f.Usage.CompletionTokens,
                            ReasoningTokenCount = f.Usage.ReasoningTokens,
                            TotalTokenCount = f.Usage.PromptTokens + f.Usage.CompletionTokens,
                        };
                        var last = Update(new UsageContent(usage));
                        last.FinishReason = MessageMapping.ToFinishReason(f.Reason);
                        last.AdditionalProperties = new AdditionalPropertiesDictionary
                        {
                            ["ttft_ms"] = f.Timings.TimeToFirstTokenMs,
                            ["prefill_tokens_per_second"] = f.Timings.PrefillTokensPerSecond,
                            ["decode_tokens_per_second"] = f.Timings.DecodeTokensPerSecond,
                        };
                        yield return last;
                        break;
                }
            }
        }
        finally
        {
            await ReleaseConversationAsync(sessionId).ConfigureAwait(false);
        }
    }

    /// <summary>The session a call continues (marked busy) and the messages it adds.</summary>
    private async Task<(string SessionId, IReadOnlyList<ChatMessage> Messages)> ClaimConversationAsync(List<ChatMessage> messages, string? conversationId)
    {
        if (conversationId is not null)
        {
            Conversation? known;
            lock (_gate)
                known = _conversations.GetValueOrDefault(conversationId);
            var transcript = known?.Transcript ?? await _client.GetTranscriptAsync(conversationId).ConfigureAwait(false);
            lock (_gate)
            {
                if (!_conversations.TryGetValue(conversationId, out var conversation))
                    _conversations[conversationId] = conversation = new Conversation(transcript);
                conversation.Busy++;
                conversation.LastUsed = ++_clock;
                EvictLocked();
            }
            return (conversationId, MessageMapping.IsStrictPrefix(transcript, messages) ? messages[transcript.Count..] : messages);
        }

        lock (_gate)
        {
            string? best = null;
            int bestLength = -1;
            foreach (var (id, conversation) in _conversations)
            {
                if (conversation.Busy == 0 && conversation.Transcript.Count > bestLength && MessageMapping.IsStrictPrefix(conversation.Transcript, messages))
                {
                    best = id;
                    bestLength = conversation.Transcript.Count;
                }
            }
            if (best is not null)
            {
                var conversation = _conversations[best];
                conversation.Busy++;
                conversation.LastUsed = ++_clock;
                return (best, messages[bestLength..]);
            }
            string fresh = "meai-" + Guid.NewGuid().ToString("N");
            _conversations[fresh] = new Conversation([]) { Busy = 1, LastUsed = ++_clock, Owned = true };
            EvictLocked();
            return (fresh, messages);
        }
    }

    private async Task ReleaseConversationAsync(string sessionId)
    {
        // The transcript as the session holds it now (with the answer), for the next call's prefix match.
        IReadOnlyList<ChatMessage>? transcript = null;
        try
        {
            transcript = await _client.GetTranscriptAsync(sessionId).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            // The session did not answer: forget the conversation rather than match on a stale transcript.
        }
        lock (_gate)
        {
            if (!_conversations.TryGetValue(sessionId, out var conversation))
                return;
            conversation.Busy--;
            if (transcript is not null)
                conversation.Transcript = transcript;
            else if (conversation.Busy == 0)
                _conversations.Remove(sessionId);
        }
    }

    private void EvictLocked()
    {
        while (_conversations.Count > Math.Max(1, _options.MaxConversations))
        {
            var oldest = _conversations.Where(p => p.Value.Busy == 0).OrderBy(p => p.Value.LastUsed).Select(p => p.Key).FirstOrDefault();
            if (oldest is null)
                return;
            if (_conversations.Remove(oldest, out var conversation) && conversation.Owned)
                _client.SessionManager.Tell(new EndSession(MessageHeader.Create(), oldest), ActorRefs.NoSender);
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return _metadata;
        if (serviceType == typeof(PipelineClient))
            return _client;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Ends the conversations this client started (the pipeline itself belongs to its host).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var (id, conversation) in _conversations)
            {
                if (conversation.Owned)
                    _client.SessionManager.Tell(new EndSession(MessageHeader.Create(), id), ActorRefs.NoSender);
            }
            _conversations.Clear();
        }
    }

    private sealed class Conversation(IReadOnlyList<ChatMessage> transcript)
    {
        public IReadOnlyList<ChatMessage> Transcript { get; set; } = transcript;
        public int Busy { get; set; }
        public long LastUsed { get; set; }

        /// <summary>Started by this client (not named by a caller's ConversationId): this client ends it.</summary>
        public bool Owned { get; init; }
    }
}
