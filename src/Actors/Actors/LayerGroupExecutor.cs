using System.Diagnostics;
using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Telemetry;
using Pipeline.Model;

namespace Pipeline.Actors.Actors;

/// <summary>
/// Runs layers [first, end) of the model for every step that reaches it, batching across sessions:
/// each <see cref="ForwardStep"/> is queued, and a <see cref="RunBatch"/> marker sent to itself
/// comes back only after every message already in the mailbox, so the pass it starts holds every
/// pending step (up to max-batch-rows rows). One pass: projections and MLP as matmuls over all rows,
/// attention per session on its own cache (<see cref="Gemma4Forward.RunLayers"/>); prefill and
/// decode rows share it. The first group embeds the ids, the last applies the final norm and the
/// tied head and answers the sessions; the others hand each step to the next group. While a
/// layer runs, the next layer's weights are paged in (<see cref="LayerPrefetcher"/>).
/// <para>
/// Cache ownership follows <see cref="SessionCache"/>: this group writes only its own layers' K/V.
/// On a failure the actor is restarted (the weights stay mapped in <see cref="PipelineModel"/>);
/// the sessions of the failed pass get <see cref="StageFailed"/> and retry their step, and steps
/// still waiting are handed to the new instance.
/// </para>
/// </summary>
public sealed class LayerGroupExecutor : PipelineActor, IWithTimers
{
    /// <summary>Marker: when it arrives, every step that was in the mailbox before it is pending.</summary>
    private sealed class RunBatch
    {
        public static readonly RunBatch Instance = new();
    }

    /// <summary>Timer: the wait numbered <see cref="Wait"/> for the previous pass's sessions is over.</summary>
    private sealed record GatherTimeout(long Wait);

    private sealed record Pending(ForwardStep Step, Activity? Span);

    private readonly PipelineModel _model;
    private readonly PipelineSettings _settings;
    private readonly int _group, _first, _end;
    private readonly bool _isFirst, _isLast;
    private readonly IActorRef? _next;
    private readonly KeyValuePair<string, object?> _groupTag;
    private readonly List<Pending> _pending = [];
    private readonly List<Pending> _running = [];
    private readonly List<int> _logitRows = [];
    private readonly List<SessionCache> _logitTargets = [];
    private readonly HashSet<string> _previousPass = [];   // sessions of the last pass: their next steps are gathered
    private ForwardBatch? _batch;
    private ForwardWorkspace? _work;
    private bool _scheduled;
    private TimeSpan _lastPassTime;
    private long _wait;                // number of the current gather wait (0 = not waiting)
    private long _waits;

    public LayerGroupExecutor(PipelineModel model, PipelineSettings settings, int group, int first, int end, IActorRef? next, FaultInjector faults)
        : base(ActorRole.Executor, faults)
    {
        _model = model;
        _settings = settings;
        _group = group;
        _first = first;
        _end = end;
        _isFirst = first == 0;
        _isLast = end == model.Text.NumHiddenLayers;
        _next = next;
        if (!_isLast && next is null)
            throw new ArgumentException($"layer group {group} [{first}, {end}) is not the last but has no next group", nameof(next));
        _groupTag = new KeyValuePair<string, object?>(PipelineTags.LayerGroup, group);
        Receive<ForwardStep>(OnStep);
        Receive<RunBatch>(_ =>
        {
            _scheduled = false;
            if (!StartGatherWait())
                RunPending();
        });
        Receive<GatherTimeout>(m =>
        {
            if (m.Wait != _wait)
                return;   // the wait already ended: every session arrived
            _wait = 0;
            RunPending();
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(PipelineModel model, PipelineSettings settings, int group, int first, int end, IActorRef? next, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new LayerGroupExecutor(model, settings, group, first, end, next, faults))
            .WithDispatcher(settings.KernelDispatcher);

    protected override void PreStart()
    {
        lock (_model.BackendGate)
        {
            _batch = _model.Forward.CreateBatch(_settings.MaxBatchRows);
            _work = _model.Forward.CreateWorkspace(_settings.MaxBatchRows, _isLast ? 8 : 1);
        }
    }

    protected override void PostStop()
    {
        lock (_model.BackendGate)
        {
            _batch?.Dispose();
            _work?.Dispose();
        }
        foreach (var pending in _pending)
            pending.Span?.Dispose();
    }

    protected override bool InjectsFaultsOnReceive(object message) => false;

    protected override void Describe(Activity activity, IPipelineMessage message) =>
        activity.SetTag(PipelineTags.LayerGroup, _group);

    private void OnStep(ForwardStep step)
    {
        if (step.Ids.Length == 0 || step.Ids.Length > _settings.MaxBatchRows)
            throw new ArgumentException($"step {step.Step} of session {step.SessionId} has {step.Ids.Length} rows; an executor pass holds 1..{_settings.MaxBatchRows}");
        _pending.Add(new Pending(step, DetachActivity()));
        PipelineTelemetry.QueueDepth.Add(1, _groupTag);
        if (_wait != 0)
        {
            // Waiting for the previous pass's sessions: run as soon as the last of them arrived.
            if (!MissingFromPreviousPass())
            {
                _wait = 0;
                Timers.Cancel(nameof(GatherTimeout));
                RunPending();
            }
            return;
        }
        if (!_scheduled)
        {
            _scheduled = true;
            Self.Tell(RunBatch.Instance);
        }
    }

    /// <summary>
    /// Decoding sessions come back one by one (each samples its token first), so the first to arrive
    /// would otherwise start a pass alone and split the rest into later passes, each reading every
    /// weight again. Starts a bounded wait when some session of the previous pass has not sent its
    /// next step yet; returns false when the pass should run now.
    /// </summary>
    private bool StartGatherWait()
    {
        var bound = TimeSpan.FromTicks(Math.Min(_settings.BatchGatherWait.Ticks, _lastPassTime.Ticks / 10));
        if (!_settings.Batching || bound < TimeSpan.FromMilliseconds(1) || !MissingFromPreviousPass())
            return false;
        int rows = 0;
        foreach (var pending in _pending)
            rows += pending.Step.Ids.Length;
        if (rows >= _settings.MaxBatchRows)
            return false;
        _wait = ++_waits;
        Timers.StartSingleTimer(nameof(GatherTimeout), new GatherTimeout(_wait), bound);
        return true;
    }

    private bool MissingFromPreviousPass()
    {
        int present = 0;
        foreach (var pending in _pending)
        {
            if (_previousPass.Contains(pending.Step.SessionId))
                present++;
        }
        return present < _previousPass.Count;
    }

    private void RunPending()
    {
        if (_pending.Count == 0)
            return;
        int rows = 0, taken = 0;
        while (taken < _pending.Count
               && (taken == 0 || (_settings.Batching && rows + _pending[taken].Step.Ids.Length <= _settings.MaxBatchRows)))
        {
            rows += _pending[taken].Step.Ids.Length;
            taken++;
        }
        _running.AddRange(_pending.GetRange(0, taken));
        _pending.RemoveRange(0, taken);

        // Test-only chaos strikes the pass itself, where a kernel failure would.
        Faults.BeforeHandling(Role, _running[0].Step);
        long started = Stopwatch.GetTimestamp();
        Compute(rows);
        _lastPassTime = Stopwatch.GetElapsedTime(started);
        _previousPass.Clear();
        foreach (var (step, _) in _running)
            _previousPass.Add(step.SessionId);

        PipelineTelemetry.BatchSize.Record(_running.Count, _groupTag);
        PipelineTelemetry.BatchRows.Record(rows, _groupTag);
        PipelineTelemetry.PassDuration.Record(_lastPassTime.TotalMilliseconds, _groupTag);
        foreach (var (step, span) in _running)
        {
            span?.SetTag(PipelineTags.BatchSize, _running.Count);
            span?.SetTag(PipelineTags.BatchRows, rows);
            if (_isLast)
            {
                step.Cache.EndStep();
                step.ReplyTo.Tell(new StepComputed(NewHeader(span), step.SessionId, step.TurnId, step.Step, step.RequestId, step.Ids.Length, step.Cache));
            }
            else
            {
                _next!.Tell(step with { Header = NewHeader(span) });
            }
            span?.Dispose();
            PipelineTelemetry.QueueDepth.Add(-1, _groupTag);
        }
        _running.Clear();

        if (_pending.Count > 0 && !_scheduled)
        {
            _scheduled = true;
            Self.Tell(RunBatch.Instance);
        }
    }

    /// <summary>One pass over the running steps: [rows, hidden] through layers [first, end).</summary>
    private void Compute(int rows)
    {
        var batch = _batch!;
        var work = _work!;
        var forward = _model.Forward;
        var backend = _model.Backend;
        int hidden = _model.Text.HiddenSize;
        lock (_model.BackendGate)
        {
            batch.Clear();
            foreach (var (step, _) in _running)
            {
                if (_isFirst)
                    step.Cache.Kv.Reserve(step.StartPosition + step.Ids.Length);
                batch.Add(step.Cache.Kv, step.Ids, step.StartPosition, step.Embedded ?? []);
            }

            // h [rows, hidden]: embedded here, or the previous group's output from each step's handle.
            if (_isFirst)
            {
                _model.Prefetcher.Request(_first);
                forward.Embed(batch);
            }
            else
            {
                for (int s = 0; s < _running.Count; s++)
                {
                    var segment = batch.Segment(s);
                    backend.Copy(_running[s].Step.Cache.Activations(segment.Rows), batch.Hidden.Slice((long)segment.FirstRow * hidden, (long)segment.Rows * hidden));
                }
            }

            for (int layer = _first; layer < _end; layer++)
            {
                _model.Prefetcher.Request(layer + 1);
                forward.RunLayers(batch, work, layer, layer + 1);
            }

            if (_isLast)
            {
                _logitRows.Clear();
                _logitTargets.Clear();
                for (int s = 0; s < _running.Count; s++)
                {
                    if (!_running[s].Step.WantLogits)
                        continue;
                    var segment = batch.Segment(s);
                    _logitRows.Add(segment.FirstRow + segment.Rows - 1);
                    _logitTargets.Add(_running[s].Step.Cache);
                }
                int vocab = _model.Text.VocabSize;
                for (int i = 0; i < _logitRows.Count; i += work.MaxLogitRows)
                {
                    int count = Math.Min(work.MaxLogitRows, _logitRows.Count - i);
                    forward.Head(batch, work, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_logitRows).Slice(i, count));
                    var logits = forward.LogitRows(work, count);   // [count, vocab]
                    for (int j = 0; j < count; j++)
                        backend.Read(logits.Slice((long)j * vocab, vocab), _logitTargets[i + j].Logits);
                }
            }
            else
            {
                for (int s = 0; s < _running.Count; s++)
                {
                    var segment = batch.Segment(s);
                    backend.Copy(batch.Hidden.Slice((long)segment.FirstRow * hidden, (long)segment.Rows * hidden), _running[s].Step.Cache.Activations(segment.Rows));
                }
                backend.Synchronize();
            }
        }
    }

    protected override void ReportLostRequests(Exception reason, object message)
    {
        // The failed pass: its sessions retry their steps (the protocol lets them rewrite the positions).
        foreach (var (step, span) in _running)
        {
            span?.SetStatus(ActivityStatusCode.Error, reason.Message);
            span?.Dispose();
            step.Cache.EndStep();
            ReportLost(step, reason, step.ReplyTo);
            PipelineTelemetry.QueueDepth.Add(-1, _groupTag);
        }
        _running.Clear();
        // A step whose receipt failed never became pending.
        if (message is ForwardStep failed)
        {
            failed.Cache.EndStep();
            ReportLost(failed, reason, failed.ReplyTo);
        }
        // Steps still waiting did nothing yet: the new instance takes them over.
        foreach (var (step, span) in _pending)
        {
            span?.Dispose();
            PipelineTelemetry.QueueDepth.Add(-1, _groupTag);
            Self.Tell(step with { Header = step.Header.Resent() }, ActorRefs.NoSender);
        }
        _pending.Clear();
    }
}
