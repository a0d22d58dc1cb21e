using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Pipeline.Actors.Telemetry;

/// <summary>
/// The pipeline's traces and metrics. Every handled message is an <see cref="Activity"/> of
/// <see cref="ActivitySource"/> "Pipeline.Actors" (child of the sender's context); a turn is a trace
/// whose root span carries the gen_ai.* attributes. <see cref="Meter"/> "Pipeline.Actors" publishes
/// time to first token, throughput, executor queue depth and batch sizes.
/// </summary>
public static class PipelineTelemetry
{
    public const string SourceName = "Pipeline.Actors";

    public static readonly ActivitySource ActivitySource = new(SourceName, "1.0");
    public static readonly Meter Meter = new(SourceName, "1.0");

    /// <summary>Milliseconds from a turn's request to its first sampled token.</summary>
    public static readonly Histogram<double> TimeToFirstToken =
        Meter.CreateHistogram<double>("pipeline.turn.time_to_first_token", "ms", "Time from a turn's request to its first sampled token");

    /// <summary>Decode throughput of a finished turn (tokens after the first, per second).</summary>
    public static readonly Histogram<double> DecodeTokensPerSecond =
        Meter.CreateHistogram<double>("pipeline.turn.decode_tokens_per_second", "{token}/s", "Decode throughput of a turn");

    /// <summary>Prefill throughput of a finished turn (prompt tokens computed, per second).</summary>
    public static readonly Histogram<double> PrefillTokensPerSecond =
        Meter.CreateHistogram<double>("pipeline.turn.prefill_tokens_per_second", "{token}/s", "Prefill throughput of a turn");

    /// <summary>Tokens generated, over all sessions.</summary>
    public static readonly Counter<long> GeneratedTokens =
        Meter.CreateCounter<long>("pipeline.tokens.generated", "{token}", "Tokens sampled");

    /// <summary>Turns finished, tagged with the finish reason.</summary>
    public static readonly Counter<long> Turns =
        Meter.CreateCounter<long>("pipeline.turns", "{turn}", "Turns finished");

    /// <summary>Steps waiting in (or running on) a layer-group executor.</summary>
    public static readonly UpDownCounter<long> QueueDepth =
        Meter.CreateUpDownCounter<long>("pipeline.executor.queue_depth", "{step}", "Steps pending at a layer-group executor");

    /// <summary>Steps (sessions) in one batched pass of a layer group.</summary>
    public static readonly Histogram<int> BatchSize =
        Meter.CreateHistogram<int>("pipeline.executor.batch_size", "{step}", "Steps per batched pass");

    /// <summary>Rows (tokens) in one batched pass of a layer group.</summary>
    public static readonly Histogram<int> BatchRows =
        Meter.CreateHistogram<int>("pipeline.executor.batch_rows", "{token}", "Rows per batched pass");

    /// <summary>Compute time of one batched pass of a layer group (the math, without message handling).</summary>
    public static readonly Histogram<double> PassDuration =
        Meter.CreateHistogram<double>("pipeline.executor.pass_duration", "ms", "Compute time of one batched pass");

    /// <summary>How long messages waited in mailboxes, per role.</summary>
    public static readonly Histogram<double> MailboxWait =
        Meter.CreateHistogram<double>("pipeline.mailbox.wait", "ms", "Time a message waited before its actor handled it");

    /// <summary>Restarts of supervised actors after a failure, per role.</summary>
    public static readonly Counter<long> Restarts =
        Meter.CreateCounter<long>("pipeline.actor.restarts", "{restart}", "Actor restarts after failures");
}

/// <summary>Attribute names on the pipeline's spans.</summary>
public static class PipelineTags
{
    public const string Role = "pipeline.role";
    public const string MessageType = "pipeline.message.type";
    public const string MessageId = "pipeline.message.id";
    public const string SessionId = "pipeline.session.id";
    public const string TurnId = "pipeline.turn.id";
    public const string Step = "pipeline.step";
    public const string LayerGroup = "pipeline.layer_group";
    public const string BatchSize = "pipeline.batch.size";
    public const string BatchRows = "pipeline.batch.rows";
    public const string MailboxWaitMs = "pipeline.mailbox.wait_ms";
    public const string Error = "error.type";

    // OpenTelemetry GenAI semantic conventions, on a turn's root span.
    public const string GenAiOperation = "gen_ai.operation.name";
    public const string GenAiSystem = "gen_ai.system";
    public const string GenAiRequestModel = "gen_ai.request.model";
    public const string GenAiResponseModel = "gen_ai.response.model";
    public const string GenAiRequestMaxTokens = "gen_ai.request.max_tokens";
    public const string GenAiRequestTemperature = "gen_ai.request.temperature";
    public const string GenAiRequestSeed = "gen_ai.request.seed";
    public const string GenAiConversationId = "gen_ai.conversation.id";
    public const string GenAiInputTokens = "gen_ai.usage.input_tokens";
    public const string GenAiOutputTokens = "gen_ai.usage.output_tokens";
    public const string GenAiCachedInputTokens = "gen_ai.usage.cache_read.input_tokens";
    public const string GenAiFinishReasons = "gen_ai.response.finish_reasons";
    public const string GenAiPrompt = "gen_ai.prompt";
    public const string GenAiCompletion = "gen_ai.completion";
}
