using System.Runtime.ExceptionServices;

namespace Pipeline.Kernels.Cpu;

/// <summary>One chunk of a parallel operation; <paramref name="worker"/> indexes per-thread scratch (0 = the caller).</summary>
internal interface IParallelJob
{
    void Execute(int chunk, int worker);
}

/// <summary>
/// A fixed set of threads that, together with the calling thread, run the chunks of one job at a
/// time. Nothing is allocated per job: jobs are preallocated objects, and chunks are claimed from a
/// single 64-bit ticket [generation:24 | chunk count:20 | next chunk:20] with compare-and-swap,
/// so a thread that wakes up late can never claim a chunk of a job other than the current one.
/// Idle threads spin briefly (ops arrive back to back during a forward pass), then sleep.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private const int MaxChunks = (1 << 20) - 1;
    private const int SpinIterations = 200;   // ~50-100 us: ops of one forward pass arrive closer than that

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private IParallelJob? _job;
    private long _ticket;
    private long _generation;
    private int _done;
    private int _sleepers;
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;

    public WorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        Workers = threads;
        _threads = new Thread[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"pipeline-cpu-{i + 1}" };
            _threads[i].Start(i + 1);
        }
    }

    /// <summary>Threads that execute chunks, the caller included.</summary>
    public int Workers { get; }

    /// <summary>Runs chunks 0..chunks-1 of <paramref name="job"/> and returns when all have finished.</summary>
    public void Run(IParallelJob job, int chunks)
    {
        if (chunks <= 0)
            return;
        if (chunks == 1 || _threads.Length == 0)
        {
            for (int i = 0; i < chunks; i++)
                job.Execute(i, 0);
            return;
        }
        if (chunks > MaxChunks)
            throw new ArgumentOutOfRangeException(nameof(chunks), chunks, $"at most {MaxChunks} chunks per job");

        _job = job;
        _done = 0;
        _generation = (_generation + 1) & 0xFFFFFF;
        Interlocked.Exchange(ref _ticket, (_generation << 40) | ((long)chunks << 20));
        if (Volatile.Read(ref _sleepers) > 0)
        {
            lock (_gate)
                Monitor.PulseAll(_gate);
        }

        ClaimAndRun(0);
        var spin = new SpinWait();
        while (Volatile.Read(ref _done) < chunks)
            spin.SpinOnce(sleep1Threshold: -1);

        if (_failure is { } failure)
        {
            _failure = null;
            failure.Throw();
        }
    }

    private bool HasWork()
    {
        long ticket = Volatile.Read(ref _ticket);
        return (ticket & 0xFFFFF) < ((ticket >> 20) & 0xFFFFF);
    }

    private void ClaimAndRun(int worker)
    {
        while (true)
        {
            long ticket = Volatile.Read(ref _ticket);
            int next = (int)(ticket & 0xFFFFF);
            if (next >= (int)((ticket >> 20) & 0xFFFFF))
                return;
            if (Interlocked.CompareExchange(ref _ticket, ticket + 1, ticket) != ticket)
                continue;
            // Read the job only after the claim succeeded: the job cannot change until this chunk is done.
            try
            {
                _job!.Execute(next, worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
            Interlocked.Increment(ref _done);
        }
    }

    private void WorkerLoop(object? state)
    {
        int worker = (int)state!;
        while (!_stopping)
        {
            if (HasWork())
            {
                ClaimAndRun(worker);
                continue;
            }
            for (int i = 0; i < SpinIterations && !HasWork() && !_stopping; i++)
                Thread.SpinWait(20);
            if (HasWork())
                continue;
            lock (_gate)
            {
                Interlocked.Increment(ref _sleepers);
                while (!HasWork() && !_stopping)
                    Monitor.Wait(_gate);
                Interlocked.Decrement(ref _sleepers);
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        lock (_gate)
            Monitor.PulseAll(_gate);
        foreach (var thread in _threads)
            thread.Join();
    }
}
