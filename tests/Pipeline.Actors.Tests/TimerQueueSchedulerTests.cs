using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit.Xunit2;
using Pipeline.Actors.Hosting;

namespace Pipeline.Actors.Tests;

public class TimerQueueSchedulerTests() : TestKit(PipelineConfig.Load(), "timer-queue-scheduler")
{
    private IScheduler Scheduler => Sys.Scheduler;

    private int Pending => Assert.IsType<TimerQueueScheduler>(Sys.Scheduler).Pending;

    [Fact]
    public void ThePipelineConfigurationSelectsIt() => Assert.IsType<TimerQueueScheduler>(Sys.Scheduler);

    [Fact]
    public void ATellArrivesAfterItsDelay()
    {
        var probe = CreateTestProbe();
        var clock = Stopwatch.StartNew();
        Scheduler.ScheduleTellOnce(TimeSpan.FromMilliseconds(60), probe, "due", TestActor);
        probe.ExpectMsg("due", TimeSpan.FromSeconds(5));
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(55), $"arrived after {clock.Elapsed.TotalMilliseconds} ms");
        Assert.Equal(TestActor, probe.LastSender);
    }

    [Fact]
    public void ACancelledTellNeverArrivesAndIsForgotten()
    {
        var probe = CreateTestProbe();
        var cancelable = new Cancelable((IScheduler)Scheduler);
        Scheduler.ScheduleTellOnce(TimeSpan.FromMilliseconds(100), probe, "cancelled", ActorRefs.NoSender, cancelable);
        cancelable.Cancel();
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        AwaitCondition(() => Pending == 0, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void ACancelableCancelledBeforeSchedulingSchedulesNothing()
    {
        var probe = CreateTestProbe();
        var cancelable = new Cancelable((IScheduler)Scheduler);
        cancelable.Cancel();
        Scheduler.ScheduleTellOnce(TimeSpan.Zero, probe, "never", ActorRefs.NoSender, cancelable);
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void ARepeatedTellRepeatsUntilCancelled()
    {
        var probe = CreateTestProbe();
        var cancelable = Scheduler.ScheduleTellRepeatedlyCancelable(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(20), probe, "tick", ActorRefs.NoSender);
        for (int i = 0; i < 3; i++)
            probe.ExpectMsg("tick", TimeSpan.FromSeconds(5));
        cancelable.Cancel();
        // A tick already on its way may still land; after that, silence.
        probe.ReceiveWhile(TimeSpan.FromMilliseconds(100), m => m);
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        AwaitCondition(() => Pending == 0, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task AFailingActionIsLoggedAndLaterItemsStillRun()
    {
        var probe = CreateTestProbe();
        Sys.EventStream.Subscribe(probe, typeof(Error));
        Scheduler.Advanced.ScheduleOnce(TimeSpan.Zero, () => throw new InvalidOperationException("scheduled boom"));
        var error = probe.ExpectMsg<Error>(TimeSpan.FromSeconds(5));
        Assert.Equal("scheduled boom", error.Cause.Message);

        var done = new TaskCompletionSource();
        Scheduler.Advanced.ScheduleOnce(TimeSpan.FromMilliseconds(5), () => done.SetResult());
        await done.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void ZeroAndHugeDelaysAreAccepted()
    {
        var probe = CreateTestProbe();
        Scheduler.ScheduleTellOnce(TimeSpan.Zero, probe, "now", ActorRefs.NoSender);
        probe.ExpectMsg("now", TimeSpan.FromSeconds(5));
        var far = Scheduler.ScheduleTellOnceCancelable(TimeSpan.FromDays(400), probe, "far", ActorRefs.NoSender);
        far.Cancel();
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(50));
    }

    [Fact]
    public void AfterDisposalSchedulingFailsClearly()
    {
        var scheduler = new TimerQueueScheduler(Sys.Settings.Config, Sys.Log);
        scheduler.Dispose();
        var error = Assert.Throws<SchedulerException>(() => ((IScheduler)scheduler).ScheduleTellOnce(TimeSpan.FromSeconds(1), TestActor, "late", ActorRefs.NoSender));
        Assert.Contains("disposed", error.Message);
    }
}
