using Pipeline.Model.Sampling;

namespace Pipeline.Actors.Sessions;

/// <summary>
/// Where sessions keep what must survive their actor: the committed transcript and the progress of
/// the turn in flight. A restarted <c>SessionActor</c> reloads it and rebuilds its KV cache by
/// prefill. In-memory by default (<see cref="InMemorySessionStore"/>); implementations must be
/// thread-safe (sessions run concurrently) and return what was last saved for a session.
/// </summary>
public interface ISessionStore
{
    SessionRecord? Load(string sessionId);

    void Save(SessionRecord record);

    /// <summary>Forgets a session; false when there was nothing to forget.</summary>
    bool Delete(string sessionId);
}

/// <summary>A session's durable state: its committed messages and, during a turn, that turn's progress.</summary>
public sealed record SessionRecord(string SessionId, IReadOnlyList<ChatMessage> Transcript, TurnCheckpoint? ActiveTurn)
{
    public static SessionRecord Empty(string sessionId) => new(sessionId, [], null);
}

/// <summary>
/// Progress of the turn in flight, saved after each sampled token: enough to resume it exactly after
/// the session's actor restarts (re-prefill <see cref="PromptIds"/> + <see cref="Generated"/>,
/// restore <see cref="Sampler"/>, continue). <see cref="StreamedTokens"/> counts the generated tokens
/// whose events already reached the caller; <see cref="EndedWithStopToken"/>: the last sampled token
/// was an end-of-turn token (counted in usage, never streamed or fed); <see cref="Finishing"/>: the
/// turn has decided to end (it still streams what is pending, then finishes with this reason). <see cref="Sampler"/> is an in-process snapshot: a store
/// that cannot keep it returns null there, and such a turn ends with an error event on restart
/// instead of resuming (when it had streamed anything).
/// </summary>
public sealed record TurnCheckpoint(
    TurnRequest Request,
    int[] PromptIds,
    int CachedTokens,
    int[] Generated,
    SamplerState? Sampler,
    int StreamedTokens,
    long StartedAtUtcTicks,
    long FirstTokenAtUtcTicks,
    double PrefillMs,
    int Restarts,
    bool EndedWithStopToken = false,
    FinishReason? Finishing = null);
