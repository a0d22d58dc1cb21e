using System.Collections.Concurrent;
using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using Akka.Dispatch;
using Akka.Event;

namespace Pipeline.Actors.Hosting;

/// <summary>
/// Akka's scheduler on .NET timers (config/akka.hocon: akka.scheduler.implementation). Each scheduled
/// item is one <see cref="Timer"/>, so nothing runs until an item is due. Akka's default
/// HashedWheelTimerScheduler ticks every 10 ms once any item is pending (the pipeline always has one:
/// each step's timeout), and every tick wakes .NET thread-pool workers that then spin; on a 2-core
/// machine that took ~4% of a core from the kernel threads during decode. Timers also fire within
/// ~1 ms instead of at the next 10 ms tick, which the executors' batch-gather wait relies on.
/// </summary>
public sealed class TimerQueueScheduler : SchedulerBase, IDisposable
{
    private static readonly long s_origin = Stopwatch.GetTimestamp();
    private readonly ConcurrentDictionary<ScheduledItem, byte> _items = new();
    private volatile bool _disposed;

    public TimerQueueScheduler(Config schedulerConfig, ILoggingAdapter log)
        : base(schedulerConfig, log)
    {
    }

    protected override DateTimeOffset TimeNow => DateTimeOffset.UtcNow;

    public override TimeSpan MonotonicClock => Stopwatch.GetElapsedTime(s_origin);

    public override TimeSpan HighResMonotonicClock => Stopwatch.GetElapsedTime(s_origin);

    /// <summary>Items scheduled and not yet finished or cancelled (for tests).</summary>
    internal int Pending => _items.Count;

    protected override void InternalScheduleTellOnce(TimeSpan delay, ICanTell receiver, object message, IActorRef sender, ICancelable cancelable) =>
        Add(delay, Timeout.InfiniteTimeSpan, () => receiver.Tell(message, sender), cancelable);

    protected override void InternalScheduleTellRepeatedly(TimeSpan initialDelay, TimeSpan interval, ICanTell receiver, object message, IActorRef sender, ICancelable cancelable) =>
        Add(initialDelay, interval, () => receiver.Tell(message, sender), cancelable);

    protected override void InternalScheduleOnce(TimeSpan delay, Action action, ICancelable cancelable) =>
        Add(delay, Timeout.InfiniteTimeSpan, action, cancelable);

    protected override void InternalScheduleOnce(TimeSpan delay, IRunnable action, ICancelable cancelable) =>
        Add(delay, Timeout.InfiniteTimeSpan, action.Run, cancelable);

    protected override void InternalScheduleRepeatedly(TimeSpan initialDelay, TimeSpan interval, Action action, ICancelable cancelable) =>
        Add(initialDelay, interval, action, cancelable);

    protected override void InternalScheduleRepeatedly(TimeSpan initialDelay, TimeSpan interval, IRunnable action, ICancelable cancelable) =>
        Add(initialDelay, interval, action.Run, cancelable);

    private void Add(TimeSpan delay, TimeSpan interval, Action action, ICancelable? cancelable)
    {
        if (_disposed)
            throw new SchedulerException("the scheduler was disposed with its actor system: nothing more can be scheduled");
        if (cancelable is { IsCancellationRequested: true })
            return;
        var item = new ScheduledItem(this, action, repeats: interval != Timeout.InfiniteTimeSpan, cancelable);
        _items.TryAdd(item, 0);
        item.Start(Clamp(delay), interval == Timeout.InfiniteTimeSpan ? interval : Clamp(interval));
        if (_disposed)
            item.Stop();   // lost a race with Dispose: Dispose may have listed the items before this one
    }

    /// <summary>Timer accepts at most 2^32-2 ms (~49 days); Akka has already refused negative delays.</summary>
    private static TimeSpan Clamp(TimeSpan delay) =>
        delay > TimeSpan.FromMilliseconds(uint.MaxValue - 1) ? TimeSpan.FromMilliseconds(uint.MaxValue - 1) : delay;

    public void Dispose()
    {
        _disposed = true;
        foreach (var item in _items.Keys)
            item.Stop();
    }

    private sealed class ScheduledItem(TimerQueueScheduler owner, Action action, bool repeats, ICancelable? cancelable)
    {
        private readonly Lock _gate = new();
        private Timer? _timer;
        private CancellationTokenRegistration _registration;
        private int _stopped;

        public void Start(TimeSpan delay, TimeSpan interval)
        {
            lock (_gate)
            {
                _timer = new Timer(static state => ((ScheduledItem)state!).Fire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                if (cancelable is not null)
                    _registration = cancelable.Token.Register(static state => ((ScheduledItem)state!).Stop(), this);
                if (Volatile.Read(ref _stopped) == 0)
                    _timer.Change(delay, interval);
            }
        }

        private void Fire()
        {
            if (Volatile.Read(ref _stopped) != 0 || cancelable is { IsCancellationRequested: true })
                return;
            if (!repeats)
                Stop();
            try
            {
                action();
            }
            catch (Exception e)
            {
                owner.Log.Error(e, "a scheduled action failed");
            }
        }

        public void Stop()
        {
            if (Interlocked.Exchange(ref _stopped, 1) != 0)
                return;
            owner._items.TryRemove(this, out _);
            lock (_gate)
            {
                _timer?.Dispose();
                _registration.Dispose();
            }
        }
    }
}
