using System.Diagnostics;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Hosting;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Telemetry;
using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

public class BaseActorTests() : TestKit(PipelineConfig.Load("akka.actor.serialize-messages = on"), "base-actor")
{
    /// <summary>Answers TokenizePrompt with the text's length; sleeps first when asked, to make mailbox wait visible.</summary>
    private sealed class EchoStage : PipelineActor
    {
        public EchoStage(FaultInjector faults)
            : base(ActorRole.Tokenizer, faults)
        {
            Receive<TokenizePrompt>(m =>
            {
                if (m.Text == "sleep")
                    Thread.Sleep(200);
                Sender.Tell(new PromptTokenized(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, [m.Text.Length]));
            });
        }
    }

    /// <summary>A parent with the pipeline's stage strategy, forwarding everything to its one child.</summary>
    private sealed class StageParent : ReceiveActor
    {
        public StageParent(Props child)
        {
            var stage = Context.ActorOf(child, "stage");
            ReceiveAny(m => stage.Forward(m));
        }

        protected override SupervisorStrategy SupervisorStrategy() => Supervision.Stages();
    }

    [Fact]
    public void Handling_a_message_is_a_span_that_is_a_child_of_the_sender_and_records_mailbox_wait()
    {
        using var spans = new SpanCollector();
        var stage = Sys.ActorOf(Props.Create(() => new EchoStage(FaultInjector.None)));
        ActivityTraceId traceId;
        string rootSpanId;
        using (var root = SpanCollector.TestSource.StartActivity("test root")!)
        {
            traceId = root.TraceId;
            rootSpanId = root.SpanId.ToHexString();
            stage.Tell(new TokenizePrompt(MessageHeader.Create(), "s1", "t1", "sleep"));
            stage.Tell(new TokenizePrompt(MessageHeader.Create(), "s1", "t1", "second"));
        }
        var first = ExpectMsg<PromptTokenized>();
        var second = ExpectMsg<PromptTokenized>();
        Assert.Equal([5], first.Ids);
        Assert.Equal([6], second.Ids);

        var handled = AwaitSpans(spans, traceId, 2);
        foreach (var span in handled)
        {
            Assert.Equal(rootSpanId, span.ParentSpanId.ToHexString());
            Assert.Equal("tokenizer TokenizePrompt", span.DisplayName);
            Assert.Equal("tokenizer", span.GetTagItem(PipelineTags.Role));
            Assert.Equal("TokenizePrompt", span.GetTagItem(PipelineTags.MessageType));
            Assert.Equal("s1", span.GetTagItem(PipelineTags.SessionId));
            Assert.NotNull(span.GetTagItem(PipelineTags.MessageId));
        }
        // The second message waited behind the first one's 200 ms.
        double secondWait = handled.Select(s => (double)s.GetTagItem(PipelineTags.MailboxWaitMs)!).Max();
        Assert.True(secondWait >= 150, $"mailbox wait {secondWait} ms");

        // The reply's header carries the handler's span, so the next hop would be its child.
        var replyParent = ActivityContext.Parse(first.Header.TraceParent!, null);
        Assert.Contains(handled, s => s.SpanId == replyParent.SpanId);
    }

    [Fact]
    public void Serializable_messages_arrive_as_MessagePack_copies_and_local_only_ones_as_the_same_object()
    {
        var serializable = new TokenizePrompt(MessageHeader.Create(), "s1", "t1", "hello");
        TestActor.Tell(serializable);
        var received = ExpectMsg<TokenizePrompt>();
        Assert.NotSame(serializable, received);
        Assert.Equal(serializable, received);

        var writer = System.Threading.Channels.Channel.CreateBounded<ChatEvent>(1).Writer;
        var local = new StartTurn(MessageHeader.Create(), new TurnRequest { SessionId = "s1", Messages = [] }, writer, CancellationToken.None);
        TestActor.Tell(local);
        Assert.Same(local, ExpectMsg<StartTurn>());
    }

    [Fact]
    public void A_stage_that_fails_tells_the_requester_which_request_it_lost()
    {
        var faults = new FaultInjector(new Dictionary<ActorRole, RoleFault> { [ActorRole.Tokenizer] = new(1.0, FaultMode.Throw) }, seed: 1);
        var stage = Sys.ActorOf(Props.Create(() => new EchoStage(faults)));
        var request = new TokenizePrompt(MessageHeader.Create(), "s1", "t1", "x");
        stage.Tell(request);
        var failed = ExpectMsg<StageFailed>();
        Assert.Equal(request.Header.MessageId, failed.RequestId);
        Assert.Equal(ActorRole.Tokenizer, failed.Role);
        Assert.Equal("t1", failed.TurnId);
        Assert.Contains("injected fault in the tokenizer actor while handling TokenizePrompt", failed.Reason);
        Assert.Equal(1, faults.Injected(ActorRole.Tokenizer));
    }

    [Fact]
    public void Injected_kill_restarts_the_stage_which_then_serves_again()
    {
        var faults = new FaultInjector(new Dictionary<ActorRole, RoleFault> { [ActorRole.Tokenizer] = new(0.5, FaultMode.Kill) }, seed: 3);
        var stage = Sys.ActorOf(Props.Create(() => new StageParent(Props.Create(() => new EchoStage(faults)))));
        int answered = 0, lost = 0;
        for (int i = 0; i < 40; i++)
        {
            stage.Tell(new TokenizePrompt(MessageHeader.Create(), "s1", "t1", new string('a', i)));
            var reply = ExpectMsg<IPipelineMessage>();
            if (reply is PromptTokenized tokenized)
            {
                Assert.Equal([i], tokenized.Ids);
                answered++;
            }
            else
            {
                Assert.Contains("ActorKilledException", Assert.IsType<StageFailed>(reply).Reason);
                lost++;
            }
        }
        Assert.Equal(40, answered + lost);
        Assert.InRange(lost, 5, 35);
        Assert.Equal(lost, faults.Injected(ActorRole.Tokenizer));
    }

    private static IReadOnlyList<Activity> AwaitSpans(SpanCollector spans, ActivityTraceId traceId, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var found = spans.Trace(traceId).Where(s => s.Source.Name == PipelineTelemetry.SourceName).ToArray();
            if (found.Length >= count || DateTime.UtcNow > deadline)
                return found;
            Thread.Sleep(20);
        }
    }
}
