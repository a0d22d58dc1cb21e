using Pipeline.Kernels;
using Pipeline.Model;

namespace Pipeline.Actors.Execution;

/// <summary>
/// One session's model state in backend memory: its KV cache, the activations of its step in flight
/// and the logits of that step's last row. A handle: <see cref="Messages.ForwardStep"/> carries it
/// from executor to executor, never a copy of what it holds.
/// <para><b>Ownership protocol.</b></para>
/// <list type="number">
/// <item>Between steps the session's actor owns the handle. It alone reads and moves
/// <see cref="KvCache.Length"/> (Advance, Truncate, Clear), and it sends at most one step at a time.</item>
/// <item>From sending a step (<see cref="BeginStep"/>) until its answer arrives, the layer-group
/// executors own it, one at a time in layer order (a step reaches group g+1 only after group g has
/// finished with it). Group g writes the keys and values of its own layers [first_g, end_g) at the
/// step's positions [start, start + rows) and nothing else of the cache; it reads and writes the
/// step's rows of <see cref="Activations"/>. The first group also grows the buffers
/// (<see cref="KvCache.Reserve"/>) and embeds the ids; the last one writes <see cref="Logits"/>.
/// No executor moves <see cref="KvCache.Length"/>: positions at or past it are scratch until the
/// session advances after the last group has run, so a step that fails half-way leaves the cache
/// exactly as it was for every position the session counts.</item>
/// <item>A failed step is retried from the first group at the same positions: each layer rewrites
/// what the failure left there. A sliding-window ring may have lost, to a partial write, the
/// positions it holds beyond the window; that is harmless while a step has at most
/// <c>sliding-cache-reserve</c> + 1 rows (config/akka.hocon keeps prefill chunks that small), and
/// for a larger step the session clears the cache and recomputes it.</item>
/// <item>Every backend call on the handle, from any actor, holds <see cref="PipelineModel.BackendGate"/>.</item>
/// <item>A session whose actor dies with a step in flight <see cref="Retire"/>s the handle; it is
/// freed when that step ends (<see cref="EndStep"/>, called by the last executor or by the one
/// that failed), never under an executor's feet.</item>
/// </list>
/// </summary>
public sealed class SessionCache
{
    private readonly PipelineModel _model;
    private DeviceBuffer? _activations;
    private int _inFlight;
    private bool _retired;
    private bool _freed;

    internal SessionCache(PipelineModel model, KvCache cache)
    {
        _model = model;
        Kv = cache;
        Logits = new float[model.Text.VocabSize];
    }

    /// <summary>Keys and values of every layer (see the protocol for who may write which layer when).</summary>
    public KvCache Kv { get; }

    /// <summary>Logits [vocab] of the last row of the last step that asked for them.</summary>
    public float[] Logits { get; }

    /// <summary>Whether a step is in flight.</summary>
    public bool InFlight => Volatile.Read(ref _inFlight) > 0;

    /// <summary>
    /// The residual stream [rows, hidden] of the step in flight, at least <paramref name="rows"/> rows.
    /// Called by executors with <see cref="PipelineModel.BackendGate"/> held.
    /// </summary>
    internal BufferSlice Activations(int rows)
    {
        int hidden = _model.Text.HiddenSize;
        long needed = (long)rows * hidden;
        if (_activations is null || _activations.Length < needed)
        {
            _activations?.Dispose();
            _activations = _model.Backend.Allocate(Math.Max(needed, (_activations?.Length ?? 0) * 2));
        }
        return _activations.Slice(0, needed);
    }

    /// <summary>The session hands the handle to the executors (one step at a time).</summary>
    public void BeginStep()
    {
        if (Interlocked.Increment(ref _inFlight) != 1)
            throw new InvalidOperationException("a session may have only one step in flight");
    }

    /// <summary>The step's answer (result or failure) is on its way to the session; frees a retired handle.</summary>
    public void EndStep()
    {
        if (Interlocked.Decrement(ref _inFlight) < 0)
            throw new InvalidOperationException("EndStep without BeginStep");
        lock (this)
        {
            if (_retired)
                Free();
        }
    }

    /// <summary>The session is done with the handle: freed now, or when the step in flight ends.</summary>
    public void Retire()
    {
        lock (this)
        {
            _retired = true;
            if (!InFlight)
                Free();
        }
    }

    private void Free()
    {
        if (_freed)
            return;
        _freed = true;
        lock (_model.BackendGate)
        {
            _activations?.Dispose();
            Kv.Dispose();
        }
    }
}
