namespace Pipeline.Host.Serve;

/// <summary>
/// Bounds the turns in flight: up to <c>parallel</c> run, up to <c>maxQueue</c> more wait in order,
/// and any beyond that are refused at once (the caller answers 429).
/// </summary>
public sealed class AdmissionGate(int parallel, int maxQueue)
{
    private readonly SemaphoreSlim _slots = new(parallel, parallel);
    private int _waiting;
    private int _running;

    public int Waiting => Volatile.Read(ref _waiting);

    public int Running => Volatile.Read(ref _running);

    /// <summary>A held slot (dispose to free it), or null when the queue is full.</summary>
    public async Task<IDisposable?> TryEnterAsync(CancellationToken cancellation)
    {
        if (_slots.Wait(0))
            return new Slot(this);
        if (Interlocked.Increment(ref _waiting) > maxQueue)
        {
            Interlocked.Decrement(ref _waiting);
            return null;
        }
        try
        {
            await _slots.WaitAsync(cancellation);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
        return new Slot(this);
    }

    private sealed class Slot : IDisposable
    {
        private AdmissionGate? _gate;

        public Slot(AdmissionGate gate)
        {
            _gate = gate;
            Interlocked.Increment(ref gate._running);
        }

        public void Dispose()
        {
            var gate = Interlocked.Exchange(ref _gate, null);
            if (gate is null)
                return;
            Interlocked.Decrement(ref gate._running);
            gate._slots.Release();
        }
    }
}
