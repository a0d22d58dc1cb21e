using Microsoft.Extensions.Logging;
using Pipeline.Actors;

namespace Pipeline.Host.Serve;

/// <summary>
/// Maps stateless chat requests (the whole conversation every time) onto the pipeline's stateful
/// sessions: a request whose messages extend a finished conversation continues that conversation's
/// session, so only the new messages are sent and its KV cache is reused (like llama.cpp's
/// cache_prompt and mlx-node's prefix match). An explicit session id pins the session instead.
/// Idle sessions beyond <c>maxSessions</c> are ended, least recently used first.
/// </summary>
public sealed class ConversationRouter(int maxSessions, ILogger<ConversationRouter> logger)
{
    private readonly object _gate = new();
    private readonly Dictionary<string, Conversation> _conversations = new(StringComparer.Ordinal);
    private long _clock;

    /// <summary>Sessions with a turn in flight.</summary>
    public int Busy
    {
        get
        {
            lock (_gate)
                return _conversations.Values.Count(c => c.Busy);
        }
    }

    /// <summary>Sessions kept (busy or idle).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
                return _conversations.Count;
        }
    }

    /// <summary>
    /// Picks the session for <paramref name="messages"/> and marks it busy. The lease says which
    /// messages the session still needs and whether its old state must be ended first.
    /// </summary>
    public Lease Acquire(IReadOnlyList<ChatMessage> messages, string? explicitId, PipelineClient client)
    {
        List<string> evicted;
        Lease lease;
        lock (_gate)
        {
            if (explicitId is not null)
            {
                if (!_conversations.TryGetValue(explicitId, out var pinned))
                {
                    pinned = new Conversation(explicitId, @explicit: true);
                    _conversations[explicitId] = pinned;
                }
                if (pinned.Busy)
                    throw new ApiException(409, $"session '{explicitId}' is busy with another turn", "session_id", "session_busy");
                bool extends = pinned.Transcript is { } known && IsStrictPrefix(known, messages);
                lease = Take(pinned, messages, reset: !extends && pinned.Started);
            }
            else
            {
                Conversation? best = null;
                foreach (var c in _conversations.Values)
                {
                    if (!c.Explicit && !c.Busy && c.Transcript is { } known && IsStrictPrefix(known, messages)
                        && (best is null || known.Count > best.Transcript!.Count))
                        best = c;
                }
                if (best is null)
                {
                    best = new Conversation("chat-" + Guid.NewGuid().ToString("N"), @explicit: false);
                    _conversations[best.Id] = best;
                }
                lease = Take(best, messages, reset: false);
            }
            evicted = EvictIdle();
        }
        foreach (string id in evicted)
            End(client, id);
        return lease;
    }

    /// <summary>
    /// Frees the session. After a clean finish it remembers the conversation (the request's messages
    /// and the answer) for the next request to extend; otherwise its state is unknown and an
    /// implicit session is ended.
    /// </summary>
    public void Release(Lease lease, TurnResult? result, PipelineClient client)
    {
        bool end = false;
        lock (_gate)
        {
            var c = lease.Conversation;
            c.Busy = false;
            c.LastUsed = ++_clock;
            if (result is { Finished.Reason: FinishReason.Stop or FinishReason.Length or FinishReason.ToolCalls or FinishReason.Repetition })
            {
                c.Transcript = [.. lease.Messages, new ChatMessage
                {
                    Role = ChatMessage.Assistant,
                    Content = result.Text,
                    ToolCalls = result.ToolCalls.Count > 0 ? result.ToolCalls : null,
                }];
            }
            else
            {
                c.Transcript = null;
                if (!c.Explicit)
                {
                    _conversations.Remove(c.Id);
                    end = true;
                }
            }
        }
        if (end)
            End(client, lease.Conversation.Id);
    }

    private Lease Take(Conversation c, IReadOnlyList<ChatMessage> messages, bool reset)
    {
        c.Busy = true;
        c.LastUsed = ++_clock;
        var known = reset ? null : c.Transcript;
        var send = known is null ? messages : messages.Skip(known.Count).ToArray();
        c.Started = true;
        return new Lease(c, messages, send, reset, known?.Count ?? 0);
    }

    private List<string> EvictIdle()
    {
        var evicted = new List<string>();
        while (_conversations.Count > maxSessions)
        {
            var oldest = _conversations.Values.Where(c => !c.Busy).MinBy(c => c.LastUsed);
            if (oldest is null)
                break;
            _conversations.Remove(oldest.Id);
            evicted.Add(oldest.Id);
        }
        return evicted;
    }

    private void End(PipelineClient client, string id)
    {
        _ = client.EndSessionAsync(id).ContinueWith(
            t => logger.LogWarning("ending session {Session} failed: {Message}", id, t.Exception!.InnerException!.Message),
            CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
    }

    private static bool IsStrictPrefix(IReadOnlyList<ChatMessage> known, IReadOnlyList<ChatMessage> messages)
    {
        if (known.Count >= messages.Count)
            return false;
        for (int i = 0; i < known.Count; i++)
        {
            if (!SameMessage(known[i], messages[i]))
                return false;
        }
        return true;
    }

    /// <summary>Same as the template sees it, ignoring reasoning (clients usually drop it, and the template drops it from earlier turns).</summary>
    private static bool SameMessage(ChatMessage a, ChatMessage b)
    {
        if (a.Role != b.Role || (a.Content ?? "") != (b.Content ?? "") || a.ToolCallId != b.ToolCallId || a.Name != b.Name)
            return false;
        var ca = a.ToolCalls ?? [];
        var cb = b.ToolCalls ?? [];
        if (ca.Count != cb.Count)
            return false;
        for (int i = 0; i < ca.Count; i++)
        {
            if (ca[i].Id != cb[i].Id || ca[i].Name != cb[i].Name || ca[i].ArgumentsJson != cb[i].ArgumentsJson)
                return false;
        }
        var ia = a.Images ?? [];
        var ib = b.Images ?? [];
        if (ia.Count != ib.Count)
            return false;
        for (int i = 0; i < ia.Count; i++)
        {
            if (ia[i].MediaType != ib[i].MediaType || ia[i].Url != ib[i].Url || !(ia[i].Data ?? []).AsSpan().SequenceEqual(ib[i].Data ?? []))
                return false;
        }
        return true;
    }

    public sealed class Conversation(string id, bool @explicit)
    {
        public string Id { get; } = id;
        public bool Explicit { get; } = @explicit;
        public bool Busy { get; set; }
        public bool Started { get; set; }
        public long LastUsed { get; set; }

        /// <summary>The conversation as the client would resend it, after the last clean turn; null = unknown.</summary>
        public IReadOnlyList<ChatMessage>? Transcript { get; set; }
    }

    /// <param name="Messages">The request's whole conversation.</param>
    /// <param name="Send">What the session still needs (all of it for a new or reset session).</param>
    /// <param name="Reset">The session's previous state must be ended before this turn.</param>
    /// <param name="ReusedMessages">Messages the session already holds.</param>
    public sealed record Lease(Conversation Conversation, IReadOnlyList<ChatMessage> Messages, IReadOnlyList<ChatMessage> Send, bool Reset, int ReusedMessages);
}
