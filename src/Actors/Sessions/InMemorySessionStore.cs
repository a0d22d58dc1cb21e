using System.Collections.Concurrent;

namespace Pipeline.Actors.Sessions;

/// <summary>The default <see cref="ISessionStore"/>: a concurrent dictionary in this process.</summary>
public sealed class InMemorySessionStore : ISessionStore
{
    private readonly ConcurrentDictionary<string, SessionRecord> _records = new(StringComparer.Ordinal);

    public SessionRecord? Load(string sessionId)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        return _records.TryGetValue(sessionId, out var record) ? record : null;
    }

    public void Save(SessionRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        _records[record.SessionId] = record;
    }

    public bool Delete(string sessionId)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        return _records.TryRemove(sessionId, out _);
    }

    /// <summary>Sessions held now.</summary>
    public IReadOnlyCollection<string> SessionIds => _records.Keys.ToArray();
}
