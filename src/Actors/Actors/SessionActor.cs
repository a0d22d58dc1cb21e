using System.Diagnostics;
using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Sessions;
using Pipeline.Actors.Telemetry;
using Pipeline.Model;
using Pipeline.Model.Sampling;
using Pipeline.Model.Vision;

namespace Pipeline.Actors.Actors;

/// <summary>The stages a session talks to; <see cref="VisionEncoder"/> is null for a model without a vision tower.</summary>
public sealed record StageRefs(IActorRef Tokenizer, IActorRef FirstExecutor, IActorRef Sampler, IActorRef Detokenizer, IActorRef? VisionEncoder);

/// <summary>
/// One conversation: owns its transcript (in the <see cref="ISessionStore"/>), its sampler state and its
/// KV cache (<see cref="SessionCache"/>). A turn is a state machine advanced one message at a time —
/// render, tokenize, prefill in chunks, then per token: sample, detokenize and stream, feed it back —
/// so cancellation and other sessions interleave. Exactly one request is outstanding at a time (so
/// at most one step in flight); <see cref="Continue"/> derives the next request from the turn's
/// state alone, which is what makes every retry and every restart the same code path.
/// <para>
/// Failures: a stage that loses a request answers <see cref="StageFailed"/>; the session retries up
/// to max-step-retries times (a step whose rows exceed the sliding reserve first clears the cache, see
/// <see cref="SessionCache"/>), then ends the turn with an error event. When this actor itself fails,
/// its next instance reloads the store and rebuilds the cache by prefill: the turn is resumed from its
/// checkpoint (prompt ids, generated tokens, sampler state), producing exactly the same tokens; after
/// max-turn-restarts restarts in one turn it ends with an error event. The user's message stays in
/// the transcript either way.
/// </para>
/// <para>
/// Images: a turn whose transcript holds images gets a [vision] step between tokenize and prefill. The
/// chat template renders each image as one image token; the <see cref="VisionEncoderActor"/> encodes the
/// images this actor has no rows for yet, and the prompt is expanded to boi + n image tokens + eoi per
/// image, the n rows taking the image's embeddings (<see cref="EmbeddingSpan"/>). A prefill step ends
/// before an image or holds all of it, so an image's rows attend to each other in one pass. The
/// transcript keeps each image's bytes (as sent: Data or a data: URI), not its rows: the rows live in
/// this actor's memory only, and a restarted instance (or one that loaded the session from the store)
/// re-encodes them from the transcript before rebuilding the cache, which gives the same rows.
/// </para>
/// </summary>
public sealed class SessionActor : PipelineActor, IWithUnboundedStash, IWithTimers
{
    private sealed record StepTimeout(string RequestId);

    /// <summary>Sent by an instance to itself at start: it comes after any hand-over from the instance before.</summary>
    private sealed record ResumeCheck(Guid Instance);

    private readonly Guid _instance = Guid.NewGuid();

    private readonly string _sessionId;
    private readonly PipelineModel _model;
    private readonly PipelineSettings _settings;
    private readonly ISessionStore _store;
    private readonly StageRefs _stages;
    private readonly int _maxContext;

    private SessionRecord _record;
    private SessionCache? _cache;
    private readonly List<int> _cachedTokens = [];   // tokens whose K/V are in _cache: Count == _cache.Kv.Length

    // The turn in flight.
    private LiveTurn? _turn;
    private TurnCheckpoint? _checkpoint;
    private readonly List<int> _target = [];         // prompt + generated tokens the cache must hold before the next sample
    private SamplingOptions? _sampling;
    private OutputSettings? _output;
    private string? _promptText;
    private int _logitsFor = -1;                     // _target.Count the cache's logits belong to, or -1
    private bool _flushed;
    private bool _needsReplay;
    private int _reasoningTokens;
    private int _step;
    private int _failures;
    private long _prefillStartTicks;
    private IStageRequest? _outstanding;
    private bool _restarting;

    // Images: rows of the transcript's images in prompt order (this instance's memory only), the
    // prompt as tokenized (one image token per image) while rows are missing, and the image spans
    // of _target (starts are positions; null until known for the turn's prompt).
    private readonly List<float[]> _imageRows = [];
    private int[]? _unexpandedPrompt;
    private EmbeddingSpan[]? _spans;

    public SessionActor(string sessionId, PipelineModel model, PipelineSettings settings, ISessionStore store, StageRefs stages, FaultInjector faults)
        : base(ActorRole.Session, faults)
    {
        _sessionId = sessionId;
        _model = model;
        _settings = settings;
        _store = store;
        _stages = stages;
        _maxContext = model.MaxContext(settings);
        _record = store.Load(sessionId) ?? SessionRecord.Empty(sessionId);
        if (_record.ActiveTurn is not null)
            AwaitingResume();
        else
            Ready();
    }

    public IStash Stash { get; set; } = null!;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string sessionId, PipelineModel model, PipelineSettings settings, ISessionStore store, StageRefs stages, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new SessionActor(sessionId, model, settings, store, stages, faults));

    protected override void PreStart()
    {
        if (_record.ActiveTurn is not null)
            Self.Tell(new ResumeCheck(_instance));
    }

    // ---------------------------------------------------------------- behaviours

    /// <summary>After a restart with a turn in flight: only the hand-over of that turn is taken first.</summary>
    private void AwaitingResume()
    {
        Receive<ResumeTurn>(m =>
        {
            Become(Ready);
            Resume(m);
            Stash.UnstashAll();
        });
        Receive<ResumeCheck>(m => m.Instance == _instance, _ =>
        {
            // No live turn came with the restart (its caller is gone): close the stale checkpoint.
            _record = _record with { ActiveTurn = null };
            _store.Save(_record);
            Become(Ready);
            Stash.UnstashAll();
        });
        Receive<ResumeCheck>(_ => { });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Ready()
    {
        Receive<StartTurn>(m =>
        {
            if (_turn is not null)
                Stash.Stash();
            else
                BeginTurn(m);
        });
        Receive<Redelivered>(OnRedelivered);
        Receive<ResumeTurn>(Resume);
        Receive<ResumeCheck>(_ => { });
        Receive<CancelTurn>(m =>
        {
            if (_turn is not null && _turn.Request.TurnId == m.TurnId)
                RequestCancel();
        });
        Receive<GetTranscript>(m => Sender.Tell(new TranscriptReply(NewHeader(), _sessionId, _record.Transcript, _turn is not null)));
        Receive<EndSession>(m => End(Sender));

        Receive<PromptRendered>(m => OnReply(m.RequestId, () =>
        {
            _promptText = m.Text;
            if (_settings.RecordContent)
                _turn!.Span?.SetTag(PipelineTags.GenAiPrompt, m.Text);
        }));
        Receive<PromptTokenized>(m => OnReply(m.RequestId, () => OnPromptTokenized(m.Ids)));
        Receive<ImagesEncoded>(m => OnReply(m.RequestId, () => _imageRows.AddRange(m.Rows)));
        Receive<ImagesRejected>(m => OnReply(m.RequestId, () => Finish(FinishReason.Error, $"an image could not be used: {m.Reason}")));
        Receive<StepComputed>(m => OnReply(m.RequestId, () => OnStepComputed(m)));
        Receive<TokenSampled>(m => OnReply(m.RequestId, () => OnTokenSampled(m)));
        ReceiveAsync<TokenDetokenized>(OnDetokenized);
        Receive<DetokenizerOutOfSync>(m => OnReply(m.RequestId, () => _needsReplay = true, countsAsFailure: true));
        Receive<StageFailed>(OnStageFailed);
        Receive<StepTimeout>(m =>
        {
            if (_outstanding?.RequestId == m.RequestId)
                OnTimeout();
        });
    }

    // ---------------------------------------------------------------- starting, resuming, ending

    private void BeginTurn(StartTurn m)
    {
        var request = m.Request;
        string? invalid = Validate(request);
        if (invalid is not null)
        {
            Reject(m.Request, m.Output, invalid);
            return;
        }
        SamplingOptions sampling;
        try
        {
            sampling = _model.SamplingFor(request.Options);
        }
        catch (ArgumentException e)
        {
            Reject(m.Request, m.Output, $"invalid sampling options: {e.Message}");
            return;
        }

        // The span of this StartTurn becomes the turn's root span and stays open until it finishes.
        var span = DetachActivity();
        if (span is not null)
        {
            span.DisplayName = $"chat {_model.Name}";
            span.SetTag(PipelineTags.GenAiOperation, "chat");
            span.SetTag(PipelineTags.GenAiSystem, "pipeline");
            span.SetTag(PipelineTags.GenAiRequestModel, _model.Name);
            span.SetTag(PipelineTags.GenAiConversationId, _sessionId);
            span.SetTag(PipelineTags.TurnId, request.TurnId);
            span.SetTag(PipelineTags.GenAiRequestMaxTokens, request.Options.MaxNewTokens);
            span.SetTag(PipelineTags.GenAiRequestTemperature, (double)sampling.Temperature);
            if (request.Options.Seed is { } seed)
                span.SetTag(PipelineTags.GenAiRequestSeed, (long)seed);
        }
        var live = new LiveTurn(request, m.Output, m.Cancellation, span);
        _record = _record with { Transcript = [.. _record.Transcript, .. request.Messages] };
        var checkpoint = new TurnCheckpoint(request, [], 0, [], null, 0, DateTime.UtcNow.Ticks, 0, 0, 0);
        Adopt(live, checkpoint, sampling);
        Save();
        Continue();
    }

    private string? Validate(TurnRequest request)
    {
        if (request.SessionId != _sessionId)
            return $"turn for session '{request.SessionId}' reached session '{_sessionId}'";
        if (request.Messages.Count == 0)
            return "a turn needs at least one message";
        if (request.Options.MaxNewTokens <= 0)
            return $"MaxNewTokens = {request.Options.MaxNewTokens} must be positive";
        foreach (var message in request.Messages)
        {
            if (message.Images is not { Count: > 0 } images)
                continue;
            if (message.Role != ChatMessage.User)
                return $"images are accepted in user messages only (the request had an image in a {message.Role} message)";
            if (_stages.VisionEncoder is null)
                return $"the model '{_model.Name}' has no vision tower (its config.json has no vision_config), so it cannot take images";
            for (int i = 0; i < images.Count; i++)
            {
                if (ImageBytes(images[i], out string? error) is null)
                    return $"image {i + 1} of the user message: {error}";
            }
        }
        return null;
    }

    /// <summary>An image's bytes: its Data, or the payload of a data: URI. Remote URLs are never fetched.</summary>
    internal static byte[]? ImageBytes(ImagePart image, out string? error)
    {
        error = null;
        if (image.Data is { Length: > 0 } data)
            return data;
        if (image.Url is not { } url)
        {
            error = "it has neither bytes nor a URL";
            return null;
        }
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            string shown = url.Length > 80 ? url[..80] + "..." : url;
            error = $"remote image URLs are refused ('{shown}'): send the image's bytes or a data: URI";
            return null;
        }
        int comma = url.IndexOf(',', StringComparison.Ordinal);
        if (comma < 0 || !url.AsSpan(0, comma).EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
        {
            error = "its data: URI is not base64 (expected data:<media type>;base64,<data>)";
            return null;
        }
        try
        {
            byte[] bytes = Convert.FromBase64String(url[(comma + 1)..]);
            if (bytes.Length == 0)
                error = "its data: URI holds no bytes";
            return bytes.Length == 0 ? null : bytes;
        }
        catch (FormatException)
        {
            error = "its data: URI has invalid base64";
            return null;
        }
    }

    private IEnumerable<ImagePart> TranscriptImages() =>
        _record.Transcript.SelectMany(m => m.Images ?? []);

    /// <summary>Takes over a turn (new or resumed): live part, durable part, derived state.</summary>
    private void Adopt(LiveTurn live, TurnCheckpoint checkpoint, SamplingOptions sampling)
    {
        _turn = live;
        _checkpoint = checkpoint;
        _sampling = sampling;
        var options = live.Request.Options;
        _output = new OutputSettings(options.Stop ?? [], options.ToolsJson is not null);
        _target.Clear();
        _target.AddRange(checkpoint.PromptIds);
        _target.AddRange(checkpoint.Generated);
        _promptText = null;
        _logitsFor = -1;
        _flushed = false;
        _needsReplay = false;
        _reasoningTokens = 0;
        _step = 0;
        _failures = 0;
        _outstanding = null;
        _prefillStartTicks = 0;
        _unexpandedPrompt = null;
        _spans = null;
        if (!live.Completed && live.Registration == default)
        {
            var self = Self;
            string turnId = live.Request.TurnId;
            live.Registration = live.Cancellation.Register(() => self.Tell(new CancelTurn(MessageHeader.Create(), _sessionId, turnId)));
        }
    }

    private void Resume(ResumeTurn m)
    {
        var live = m.Live;
        var checkpoint = _record.ActiveTurn;
        if (live.Completed)
            return;
        if (checkpoint is null || checkpoint.Request.TurnId != live.Request.TurnId)
        {
            live.Completed = true;
            Reject(live.Request, live.Output, "the session's actor failed and the turn's progress was not in the session store");
            live.Span?.Dispose();
            return;
        }
        int restarts = checkpoint.Restarts + 1;
        checkpoint = checkpoint with { Restarts = restarts };
        var sampling = _model.SamplingFor(live.Request.Options);
        if (checkpoint.Generated.Length > 0 && checkpoint.Sampler is null)
        {
            if (checkpoint.StreamedTokens > 0)
            {
                Adopt(live, checkpoint, sampling);
                Finish(FinishReason.Error, "the session restarted and its store kept no sampler state to resume the turn from");
                return;
            }
            checkpoint = checkpoint with { Generated = [] };   // nothing reached the caller: start the answer over
        }
        Adopt(live, checkpoint, sampling);
        live.Span?.AddEvent(new ActivityEvent("session restarted", tags: new ActivityTagsCollection { ["restarts"] = restarts }));
        if (restarts > _settings.MaxTurnRestarts)
        {
            Finish(FinishReason.Error, $"the session's actor failed {restarts} times in a row during this turn without producing a token (max-turn-restarts = {_settings.MaxTurnRestarts})");
            return;
        }
        // The detokenizer may hold this turn's tokens already; if not it says so and we replay.
        Save();
        Continue();
    }

    private void OnRedelivered(Redelivered m)
    {
        switch (m.Message)
        {
            case StartTurn start when _turn is not null:
                Self.Tell(m, m.ReplyTo);   // after the current turn, in order
                break;
            case StartTurn start:
                BeginTurn(start);
                break;
            case CancelTurn cancel when _turn is not null && _turn.Request.TurnId == cancel.TurnId:
                RequestCancel();
                break;
            case GetTranscript:
                m.ReplyTo.Tell(new TranscriptReply(NewHeader(), _sessionId, _record.Transcript, _turn is not null));
                break;
            case EndSession:
                End(m.ReplyTo);
                break;
        }
    }

    private void End(IActorRef replyTo)
    {
        if (_turn is not null)
            Finish(FinishReason.Cancelled, null);
        _store.Delete(_sessionId);
        var forget = new ForgetSession(NewHeader(), _sessionId);
        _stages.Sampler.Tell(forget);
        _stages.Detokenizer.Tell(forget);
        replyTo.Tell(new SessionEnded(NewHeader(), _sessionId));
        Context.Stop(Self);
    }

    /// <summary>Ends a turn that never ran (or cannot go on) with an error event.</summary>
    private void Reject(TurnRequest request, System.Threading.Channels.ChannelWriter<ChatEvent> output, string error)
    {
        Context.System.EventStream.Publish(new TurnCompleted(request.SessionId, request.TurnId, [], [], FinishReason.Error, error));
        output.TryWrite(new TurnFinished(FinishReason.Error, TurnUsage.None, TurnTimings.None, error));
        output.TryComplete();
        PipelineTelemetry.Turns.Add(1, new KeyValuePair<string, object?>("finish_reason", "error"));
    }

    private void RequestCancel()
    {
        _turn!.CancelRequested = true;
        // A step in flight owns the cache until it comes back; anything else can be dropped now.
        if (_outstanding is not ForwardStep)
        {
            _outstanding = null;
            Continue();
        }
    }

    // ---------------------------------------------------------------- the state machine

    /// <summary>Sends the next request the turn's state calls for, or finishes the turn.</summary>
    private void Continue()
    {
        if (_turn is null || _outstanding is not null)
            return;
        var checkpoint = _checkpoint!;
        if (_turn.CancelRequested || _turn.Cancellation.IsCancellationRequested)
        {
            Finish(FinishReason.Cancelled, null);
            return;
        }
        if (checkpoint.PromptIds.Length == 0)
        {
            if (_promptText is null)
            {
                var settings = new PromptSettings(_turn.Request.Options.EnableThinking, _turn.Request.Options.ReasoningEffort, _turn.Request.Options.ToolsJson);
                Send(_stages.Tokenizer, new RenderPrompt(Header(), _sessionId, _turn.Request.TurnId, _record.Transcript, settings));
            }
            else if (_unexpandedPrompt is null)
            {
                Send(_stages.Tokenizer, new TokenizePrompt(Header(), _sessionId, _turn.Request.TurnId, _promptText));
            }
            else if (!EncodeMissingImages())
            {
                ExpandPrompt();
                Continue();
            }
            return;
        }
        if (_spans is null)
        {
            // A resumed turn (prompt already expanded): re-encode, then find the image runs again.
            if (!EncodeMissingImages())
            {
                if (!FindSpans())
                    return;
                Continue();
            }
            return;
        }
        if (checkpoint.StreamedTokens < checkpoint.Generated.Length)
        {
            int index = checkpoint.StreamedTokens;
            Send(_stages.Detokenizer, new DetokenizeToken(
                Header(), _sessionId, _turn.Request.TurnId, index, checkpoint.Generated[index], Flush: false, _output!, ReplayFor(index)));
            return;
        }
        if (checkpoint.Finishing is { } reason)
        {
            if (!_flushed)
            {
                int index = checkpoint.StreamedTokens;
                Send(_stages.Detokenizer, new DetokenizeToken(
                    Header(), _sessionId, _turn.Request.TurnId, index, null, Flush: true, _output!, ReplayFor(index)));
                return;
            }
            Finish(reason, null);
            return;
        }
        _cache ??= _model.CreateSessionCache(_settings);
        if (_cache.Kv.Length >= _target.Count && _logitsFor != _target.Count)
            TruncateCache(_target.Count - 1);   // cached but no logits: recompute the last position
        if (_cache.Kv.Length < _target.Count)
        {
            SendStep();
            return;
        }
        Send(_stages.Sampler, new SampleToken(
            Header(), _sessionId, _turn.Request.TurnId, _step, _cache.Logits, _sampling!, checkpoint.Sampler));
    }

    private int[]? ReplayFor(int index)
    {
        if (!_needsReplay)
            return null;
        _needsReplay = false;
        return _checkpoint!.Generated[..index];
    }

    private void SendStep()
    {
        var cache = _cache!;
        int start = cache.Kv.Length;
        int count = Math.Min(_settings.PrefillChunk, _target.Count - start);
        EmbeddingSpan[]? embedded = null;
        if (_spans is { Length: > 0 } spans)
        {
            // A step ends before an image, or holds all of it (its rows attend to each other in one pass).
            int hidden = _model.Text.HiddenSize;
            var inStep = new List<EmbeddingSpan>();
            foreach (var span in spans)
            {
                int end = span.Start + span.Count(hidden);
                if (end <= start || span.Start >= start + count)
                    continue;
                if (span.Start < start)
                    throw new InvalidOperationException($"the cache ends at {start}, inside the image at positions [{span.Start}, {end})");
                if (span.Start > start && end > start + count)
                {
                    count = span.Start - start;
                    break;
                }
                count = Math.Max(count, end - start);
                if (count > _settings.MaxBatchRows)
                {
                    Finish(FinishReason.Error, $"an image of {end - span.Start} soft tokens does not fit one forward pass of max-batch-rows = {_settings.MaxBatchRows}");
                    return;
                }
                inStep.Add(span with { Start = span.Start - start });
            }
            embedded = inStep.Count > 0 ? [.. inStep] : null;
        }
        int[] ids = _target.GetRange(start, count).ToArray();
        bool wantLogits = start + count == _target.Count;
        if (_prefillStartTicks == 0)
            _prefillStartTicks = DateTime.UtcNow.Ticks;
        cache.BeginStep();
        Send(_stages.FirstExecutor, new ForwardStep(
            Header(), _sessionId, _turn!.Request.TurnId, _step++, Guid.NewGuid().ToString("N"), ids, start, wantLogits, cache, Self, embedded));
    }

    private void Send(IActorRef stage, IStageRequest request)
    {
        _outstanding = request;
        Timers.StartSingleTimer("step", new StepTimeout(request.RequestId), _settings.StepTimeout);
        stage.Tell(request, Self);
    }

    /// <summary>Runs <paramref name="handle"/> for the answer to the outstanding request; ignores stale answers.</summary>
    private void OnReply(string requestId, Action handle, bool countsAsFailure = false)
    {
        if (_turn is null || _outstanding?.RequestId != requestId)
            return;
        _outstanding = null;
        Timers.Cancel("step");
        if (countsAsFailure)
        {
            if (++_failures > _settings.MaxStepRetries)
            {
                Finish(FinishReason.Error, $"the detokenizer stayed out of step after {_failures} tries");
                return;
            }
        }
        else
        {
            _failures = 0;
        }
        handle();
        Continue();
    }

    private void OnPromptTokenized(int[] ids)
    {
        if (ids.Length == 0)
        {
            Finish(FinishReason.Error, "the rendered prompt tokenized to no tokens");
            return;
        }
        if (TranscriptImages().Any())
        {
            _unexpandedPrompt = ids;   // expanded once every image has its rows
            return;
        }
        AdoptPrompt(ids, []);
    }

    /// <summary>Sends the transcript's images without rows to the vision encoder; false when none are missing.</summary>
    private bool EncodeMissingImages()
    {
        var images = TranscriptImages().ToList();
        if (_imageRows.Count > images.Count)
            _imageRows.Clear();   // not this transcript's rows (cannot happen while the transcript only grows)
        if (_imageRows.Count == images.Count)
            return false;
        var missing = images.Skip(_imageRows.Count).Select(i => i with { Data = ImageBytes(i, out _), Url = null }).ToArray();
        Send(_stages.VisionEncoder!, new EncodeImages(Header(), _sessionId, _turn!.Request.TurnId, missing));
        return true;
    }

    /// <summary>The tokenized prompt with each image token expanded to the image's boi + rows + eoi.</summary>
    private void ExpandPrompt()
    {
        var vision = _model.Checkpoint.Vision!;
        int[] ids;
        EmbeddingSpan[] spans;
        try
        {
            (ids, spans) = ImagePrompt.Expand(_unexpandedPrompt, _imageRows.Select(r => (ReadOnlyMemory<float>)r).ToArray(), vision, _model.Text.HiddenSize);
        }
        catch (ArgumentException e)
        {
            Finish(FinishReason.Error, $"the rendered prompt does not match the conversation's images: {e.Message}");
            return;
        }
        _unexpandedPrompt = null;
        AdoptPrompt(ids, spans);
    }

    /// <summary>The image spans of an expanded prompt: the k-th run of image tokens takes the k-th image's rows.</summary>
    private bool FindSpans()
    {
        var vision = _model.Checkpoint.Vision;
        int hidden = _model.Text.HiddenSize;
        var ids = _checkpoint!.PromptIds;
        var spans = new List<EmbeddingSpan>();
        for (int i = 0; i < ids.Length; i++)
        {
            if (vision is null || ids[i] != vision.ImageTokenId)
                continue;
            int start = i;
            while (i < ids.Length && ids[i] == vision.ImageTokenId)
                i++;
            int k = spans.Count;
            if (k >= _imageRows.Count || _imageRows[k].Length != (i - start) * hidden)
            {
                Finish(FinishReason.Error, $"the turn's prompt has an image run of {i - start} tokens at {start} that does not match image {k + 1} of the conversation");
                return false;
            }
            spans.Add(new EmbeddingSpan(start, _imageRows[k]));
        }
        _spans = [.. spans];
        return true;
    }

    private void AdoptPrompt(int[] ids, EmbeddingSpan[] spans)
    {
        _spans = spans;
        if (ids.Length >= _maxContext)
        {
            Finish(FinishReason.Error, $"the prompt has {ids.Length} tokens, which leaves no room in the context limit of {_maxContext} tokens");
            return;
        }
        // Reuse the cache for the common prefix: only the new suffix is computed.
        int common = 0;
        int limit = Math.Min(_cachedTokens.Count, ids.Length);
        while (common < limit && _cachedTokens[common] == ids[common])
            common++;
        if (common == ids.Length)
            common--;   // the last prompt position must be computed for its logits
        int hidden = _model.Text.HiddenSize;
        foreach (var span in spans)
        {
            if (span.Start < common && span.Start + span.Count(hidden) > common)
                common = span.Start;   // an image is computed whole or not at all
        }
        TruncateCache(common);
        _checkpoint = _checkpoint! with { PromptIds = ids, CachedTokens = _cachedTokens.Count, Generated = [] };
        _target.Clear();
        _target.AddRange(ids);
        Save();
    }

    /// <summary>Keeps the first <paramref name="length"/> cached positions (or none when the sliding rings cannot go back that far).</summary>
    private void TruncateCache(int length)
    {
        if (_cache is null || _cache.Kv.Length <= length)
            return;
        if (_cache.Kv.CanTruncateTo(length))
        {
            _cache.Kv.Truncate(length);
            _cachedTokens.RemoveRange(length, _cachedTokens.Count - length);
        }
        else
        {
            _cache.Kv.Clear();
            _cachedTokens.Clear();
        }
        _logitsFor = -1;
    }

    private void OnStepComputed(StepComputed m)
    {
        var cache = _cache!;
        int start = cache.Kv.Length;
        cache.Kv.Advance(m.Rows);
        _cachedTokens.AddRange(_target.GetRange(start, m.Rows));
        if (cache.Kv.Length == _target.Count)
        {
            _logitsFor = _target.Count;
            if (_checkpoint!.FirstTokenAtUtcTicks == 0 && _checkpoint.PrefillMs == 0)
                _checkpoint = _checkpoint with { PrefillMs = TimeSpan.FromTicks(DateTime.UtcNow.Ticks - _prefillStartTicks).TotalMilliseconds };
        }
    }

    private void OnTokenSampled(TokenSampled m)
    {
        var checkpoint = _checkpoint!;
        long now = DateTime.UtcNow.Ticks;
        if (checkpoint.FirstTokenAtUtcTicks == 0)
        {
            checkpoint = checkpoint with { FirstTokenAtUtcTicks = now };
            PipelineTelemetry.TimeToFirstToken.Record(TimeSpan.FromTicks(now - checkpoint.StartedAtUtcTicks).TotalMilliseconds);
        }
        PipelineTelemetry.GeneratedTokens.Add(1);
        _logitsFor = -1;
        int completion = checkpoint.Generated.Length + 1;
        if (_model.StopTokenIds.Contains(m.Token))
        {
            checkpoint = checkpoint with { Sampler = m.State, EndedWithStopToken = true, Finishing = FinishReason.Stop };
        }
        else
        {
            // Progress: restarts are counted from the last new token, so only a failure that keeps
            // the turn from moving on at all exhausts max-turn-restarts.
            checkpoint = checkpoint with { Generated = [.. checkpoint.Generated, m.Token], Sampler = m.State, Restarts = 0 };
            _target.Add(m.Token);
            if (m.Stop != SamplerStop.None)
                checkpoint = checkpoint with { Finishing = FinishReason.Repetition };
            else if (completion >= _turn!.Request.Options.MaxNewTokens || _target.Count >= _maxContext)
                checkpoint = checkpoint with { Finishing = FinishReason.Length };
        }
        _checkpoint = checkpoint;
        Save();
    }

    private async Task OnDetokenized(TokenDetokenized m)
    {
        if (_turn is null || _outstanding?.RequestId != m.RequestId)
            return;
        _outstanding = null;
        Timers.Cancel("step");
        _failures = 0;
        var turn = _turn;
        try
        {
            foreach (var e in m.Events)
            {
                switch (e)
                {
                    case TextDelta text:
                        turn.Content.Append(text.Text);
                        break;
                    case ReasoningDelta reasoning:
                        turn.Reasoning.Append(reasoning.Text);
                        break;
                    case ToolCallEvent call:
                        turn.ToolCalls.Add(call.Call);
                        break;
                }
                if (!turn.Output.TryWrite(e))
                    await turn.Output.WriteAsync(e, turn.Cancellation);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
        {
            // The caller stopped listening: the turn ends as cancelled.
            turn.CancelRequested = true;
        }
        if (_turn != turn)
            return;
        _reasoningTokens = m.ReasoningTokens;
        var checkpoint = _checkpoint!;
        if (checkpoint.StreamedTokens < checkpoint.Generated.Length && m.TokenIndex == checkpoint.StreamedTokens)
            _checkpoint = checkpoint with { StreamedTokens = checkpoint.StreamedTokens + 1 };
        else
            _flushed = true;
        if (m.StopHit && _checkpoint!.Finishing is null)
            _checkpoint = _checkpoint with { Finishing = FinishReason.Stop };
        Save();
        Continue();
    }

    private void OnStageFailed(StageFailed m)
    {
        if (_turn is null || _outstanding?.RequestId != m.RequestId)
            return;
        var lost = _outstanding;
        _outstanding = null;
        Timers.Cancel("step");
        _turn.Span?.AddEvent(new ActivityEvent("stage failed", tags: new ActivityTagsCollection { ["role"] = m.Role.ConfigName(), ["reason"] = m.Reason }));
        if (++_failures > _settings.MaxStepRetries)
        {
            Finish(FinishReason.Error, $"the {m.Role.ConfigName()} failed {_failures} times in a row; last: {m.Reason}");
            return;
        }
        if (lost is ForwardStep step && step.Ids.Length > _settings.SlidingCacheReserve + 1)
        {
            // A long failed step may have overwritten ring entries still needed: recompute from the start.
            _cache!.Kv.Clear();
            _cachedTokens.Clear();
        }
        if (lost is DetokenizeToken)
            _needsReplay = true;   // a restarted detokenizer holds nothing of this turn
        Continue();
    }

    private void OnTimeout()
    {
        var lost = _outstanding!;
        _outstanding = null;
        if (lost is ForwardStep)
        {
            // The executors still own the cache: give it up (freed when the step ends) and start over next time.
            _cache!.Retire();
            _cache = null;
            _cachedTokens.Clear();
        }
        Finish(FinishReason.Error, $"no answer to {lost.GetType().Name} within {_settings.StepTimeout} (step-timeout)");
    }

    // ---------------------------------------------------------------- finishing

    private void Finish(FinishReason reason, string? error)
    {
        var turn = _turn!;
        var checkpoint = _checkpoint!;
        Timers.Cancel("step");
        if (_outstanding is ForwardStep)
        {
            _cache!.Retire();
            _cache = null;
            _cachedTokens.Clear();
        }
        _outstanding = null;
        if (reason == FinishReason.Stop && turn.ToolCalls.Count > 0)
            reason = FinishReason.ToolCalls;

        long now = DateTime.UtcNow.Ticks;
        int completion = checkpoint.Generated.Length + (checkpoint.EndedWithStopToken ? 1 : 0);
        var usage = new TurnUsage(checkpoint.PromptIds.Length, checkpoint.CachedTokens, completion, _reasoningTokens);
        double ttft = checkpoint.FirstTokenAtUtcTicks == 0 ? 0 : TimeSpan.FromTicks(checkpoint.FirstTokenAtUtcTicks - checkpoint.StartedAtUtcTicks).TotalMilliseconds;
        double computed = checkpoint.PromptIds.Length - checkpoint.CachedTokens;
        double prefillRate = checkpoint.PrefillMs > 0 ? computed / (checkpoint.PrefillMs / 1000) : 0;
        double decodeSeconds = checkpoint.FirstTokenAtUtcTicks == 0 ? 0 : TimeSpan.FromTicks(now - checkpoint.FirstTokenAtUtcTicks).TotalSeconds;
        double decodeRate = completion > 1 && decodeSeconds > 0 ? (completion - 1) / decodeSeconds : 0;
        var timings = new TurnTimings(ttft, prefillRate, decodeRate, TimeSpan.FromTicks(now - checkpoint.StartedAtUtcTicks).TotalMilliseconds);

        var finished = new TurnFinished(reason, usage, timings, error);
        if (!turn.Output.TryWrite(finished))
        {
            // A full channel: deliver the last event without holding up the session.
            var output = turn.Output;
            _ = Task.Run(async () =>
            {
                try
                {
                    await output.WriteAsync(finished, turn.Cancellation);
                }
                catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
                {
                }
                output.TryComplete();
            });
        }
        else
        {
            turn.Output.TryComplete();
        }
        turn.Completed = true;
        turn.Registration.Dispose();

        // The transcript keeps the user's message; the answer joins it when there is one.
        var transcript = _record.Transcript;
        if (turn.Content.Length > 0 || turn.Reasoning.Length > 0 || turn.ToolCalls.Count > 0 || reason != FinishReason.Error)
        {
            transcript = [.. transcript, new ChatMessage
            {
                Role = ChatMessage.Assistant,
                Content = turn.Content.ToString(),
                Reasoning = turn.Reasoning.Length > 0 ? turn.Reasoning.ToString() : null,
                ToolCalls = turn.ToolCalls.Count > 0 ? turn.ToolCalls.ToArray() : null,
            }];
        }
        _record = _record with { Transcript = transcript, ActiveTurn = null };
        _store.Save(_record);

        string finishName = reason.ToString().ToLowerInvariant();
        PipelineTelemetry.Turns.Add(1, new KeyValuePair<string, object?>("finish_reason", finishName));
        if (prefillRate > 0)
            PipelineTelemetry.PrefillTokensPerSecond.Record(prefillRate);
        if (decodeRate > 0)
            PipelineTelemetry.DecodeTokensPerSecond.Record(decodeRate);
        if (turn.Span is { } span)
        {
            span.SetTag(PipelineTags.GenAiResponseModel, _model.Name);
            span.SetTag(PipelineTags.GenAiInputTokens, usage.PromptTokens);
            span.SetTag(PipelineTags.GenAiCachedInputTokens, usage.CachedTokens);
            span.SetTag(PipelineTags.GenAiOutputTokens, usage.CompletionTokens);
            span.SetTag(PipelineTags.GenAiFinishReasons, new[] { finishName });
            if (_settings.RecordContent)
                span.SetTag(PipelineTags.GenAiCompletion, turn.Content.ToString());
            if (error is not null)
            {
                span.SetStatus(ActivityStatusCode.Error, error);
                span.SetTag(PipelineTags.Error, reason == FinishReason.Error ? "turn_failed" : finishName);
            }
            span.Dispose();
        }

        Context.System.EventStream.Publish(new TurnCompleted(_sessionId, turn.Request.TurnId, checkpoint.PromptIds, checkpoint.Generated, reason, error));
        _turn = null;
        _checkpoint = null;
        _target.Clear();
        Stash.UnstashAll();
    }

    private void Save() => _store.Save(_record = _record with { ActiveTurn = _checkpoint });

    /// <summary>Headers of the turn's requests: children of the turn's span, so a turn's trace stays shallow.</summary>
    private MessageHeader Header() => NewHeader(_turn?.Span);

    // ---------------------------------------------------------------- failure of this actor

    protected override void ReportLostRequests(Exception reason, object message)
    {
        _restarting = true;
        _cache?.Retire();
        _cache = null;
        if (_turn is { } turn)
        {
            turn.Span?.AddEvent(new ActivityEvent("session failed", tags: new ActivityTagsCollection { ["reason"] = ErrorText(reason) }));
            int attempt = message is ResumeTurn resume ? resume.Attempt + 1 : 1;
            HandOver(new ResumeTurn(MessageHeader.Create(turn.Span), _sessionId, turn, attempt), reason);
        }
        else if (message is ResumeTurn resume && !resume.Live.Completed)
        {
            HandOver(resume with { Header = resume.Header.Resent(), Attempt = resume.Attempt + 1 }, reason);
        }
        // A request from outside lost with this instance is delivered again (bounded).
        var (inner, replyTo, attempt2) = message switch
        {
            Redelivered r => (r.Message, r.ReplyTo, r.Attempt + 1),
            StartTurn or CancelTurn or GetTranscript or EndSession => (message, CurrentSender, 1),
            _ => (null, ActorRefs.Nobody, 0),
        };
        if (inner is null || (inner is StartTurn s && _turn?.Request.TurnId == s.Request.TurnId))
            return;
        if (attempt2 > _settings.MaxTurnRestarts)
        {
            if (inner is StartTurn lost)
                Reject(lost.Request, lost.Output, $"the session's actor failed {attempt2} times before the turn could start: {ErrorText(reason)}");
            return;
        }
        Self.Tell(new Redelivered(MessageHeader.Create(), _sessionId, inner, replyTo, attempt2), replyTo);
    }

    /// <summary>Passes the live turn to the next instance, unless this turn has failed too often already.</summary>
    private void HandOver(ResumeTurn resume, Exception reason)
    {
        if (resume.Attempt <= _settings.MaxTurnRestarts + 1)
        {
            Self.Tell(resume);
            return;
        }
        resume.Live.Completed = true;
        Reject(resume.Live.Request, resume.Live.Output, $"the session's actor failed {resume.Attempt} times in a row during this turn: {ErrorText(reason)}");
        resume.Live.Span?.Dispose();
    }

    protected override void PostStop()
    {
        if (!_restarting)
        {
            if (_turn is not null)
                Finish(FinishReason.Error, "the session was stopped");
            _cache?.Retire();
            _cache = null;
        }
        base.PostStop();
    }
}
