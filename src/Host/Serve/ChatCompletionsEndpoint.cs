using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Pipeline.Actors;

namespace Pipeline.Host.Serve;

/// <summary>
/// POST /v1/chat/completions: admission, conversation routing, then one pipeline turn answered as a
/// JSON object or as server-sent events. A client that goes away cancels its turn (prefill included).
/// </summary>
public sealed class ChatCompletionsEndpoint(
    ModelHolder holder, AdmissionGate gate, ConversationRouter router, ServeTelemetry telemetry, ServeOptions options,
    ILogger<ChatCompletionsEndpoint> logger)
{
    public const string SessionHeader = "X-Session-Id";
    private static readonly byte[] s_dataPrefix = "data: "u8.ToArray();
    private static readonly byte[] s_eventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] s_done = "data: [DONE]\n\n"u8.ToArray();

    public async Task HandleAsync(HttpContext context)
    {
        try
        {
            await RunAsync(context);
            telemetry.CountRequest(context.Response.StatusCode);
        }
        catch (ApiException e)
        {
            telemetry.CountRequest(e.Status);
            throw;
        }
    }

    private async Task RunAsync(HttpContext context)
    {
        var aborted = context.RequestAborted;
        var client = ServeEndpoints.ReadyClient(holder, context);
        var body = await ApiJson.ReadAsync(context.Request, OpenAiJson.Default.ChatCompletionRequest, aborted);
        var request = RequestMapper.Map(body);
        var model = client.Model;
        try
        {
            model.SamplingFor(request.Options);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest($"invalid sampling options: {e.Message}");
        }

        // Never truncate silently: a prompt that does not fit is refused before it takes a slot.
        string prompt = RequestMapper.Render(model.ChatFormat, request.Messages, request.Options);
        int promptTokens = model.Tokenizer.Encode(prompt, addSpecialTokens: false).Length;
        int contextLimit = model.MaxContext(client.Settings);
        if (promptTokens >= contextLimit)
            throw ApiException.BadRequest(
                $"the prompt has {promptTokens} tokens, which does not fit the context limit of {contextLimit} tokens (room is needed for at least one generated token)",
                "$.messages", "context_length_exceeded");
        var generation = request.Options with { MaxNewTokens = request.MaxTokens ?? contextLimit - promptTokens };

        string? sessionId = context.Request.Headers[SessionHeader].FirstOrDefault() ?? body.SessionId;
        if (sessionId is { Length: 0 or > 256 })
            throw ApiException.BadRequest("a session id must have 1 to 256 characters", "$.session_id");

        using var slot = await gate.TryEnterAsync(aborted);
        if (slot is null)
        {
            context.Response.Headers.RetryAfter = "1";
            throw new ApiException(StatusCodes.Status429TooManyRequests,
                $"the server is busy: {options.Parallel} turns are running and {options.MaxQueue} requests are waiting (--max-queue); retry later",
                null, "queue_full");
        }

        var lease = router.Acquire(request.Messages, sessionId, client);
        TurnResult? result = null;
        try
        {
            if (lease.Reset)
                await client.EndSessionAsync(lease.Conversation.Id);
            string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
            var turn = new TurnRequest { SessionId = lease.Conversation.Id, TurnId = id, Messages = lease.Send, Options = generation };
            var reply = new Reply(id, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ServeEndpoints.ModelName(options, model));
            context.Response.Headers[SessionHeader] = lease.Conversation.Id;
            result = request.Stream
                ? await StreamAsync(context, client, turn, reply, request.IncludeUsage)
                : await AnswerAsync(context, client, turn, reply);
        }
        finally
        {
            router.Release(lease, result, client);
        }
        Log(lease, result);
    }

    private async Task<TurnResult> AnswerAsync(HttpContext context, PipelineClient client, TurnRequest turn, Reply reply)
    {
        var result = await client.RunTurnAsync(turn, context.RequestAborted);
        var finished = result.Finished;
        if (finished.Reason == FinishReason.Cancelled)
            return result;   // the client is gone
        if (finished.Reason == FinishReason.Error)
            throw new ApiException(StatusCodes.Status500InternalServerError, finished.Error ?? "the turn failed", null, "turn_failed");
        var response = new ChatCompletionResponse
        {
            Id = reply.Id,
            Object = "chat.completion",
            Created = reply.Created,
            Model = reply.Model,
            Choices =
            [
                new Choice
                {
                    Index = 0,
                    Message = new ResponseMessage
                    {
                        Role = "assistant",
                        Content = result.Text,
                        ReasoningContent = result.Reasoning.Length > 0 ? result.Reasoning : null,
                        ToolCalls = result.ToolCalls.Count > 0 ? result.ToolCalls.Select((c, i) => Wire(c, null)).ToList() : null,
                    },
                    FinishReason = FinishName(finished.Reason),
                },
            ],
            Usage = UsageOf(finished),
            Timings = TimingsOf(finished),
        };
        CountTokens(finished);
        await context.Response.WriteAsJsonAsync(response, OpenAiJson.Default.ChatCompletionResponse, contentType: null, context.RequestAborted);
        return result;
    }

    /// <summary>
    /// Server-sent events. Nothing is sent before the turn's first event, so a turn that fails at once
    /// still gets a proper HTTP error. A failed write (client gone) cancels the turn; its remaining
    /// events are drained so the session is released only when it is really free.
    /// </summary>
    private async Task<TurnResult> StreamAsync(HttpContext context, PipelineClient client, TurnRequest turn, Reply reply, bool includeUsage)
    {
        var response = context.Response;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        var events = new List<ChatEvent>();
        bool started = false;
        bool writable = true;
        int toolIndex = 0;
        await foreach (var e in client.StreamTurnAsync(turn, stop.Token))
        {
            events.Add(e);
            if (!writable)
                continue;
            if (!started)
            {
                if (e is TurnFinished { Reason: FinishReason.Error } failed)
                    throw new ApiException(StatusCodes.Status500InternalServerError, failed.Error ?? "the turn failed", null, "turn_failed");
                if (e is TurnFinished { Reason: FinishReason.Cancelled })
                    break;
                response.ContentType = "text/event-stream";
                response.Headers.CacheControl = "no-cache";
                response.Headers["X-Accel-Buffering"] = "no";
                started = true;
                writable = await WriteAsync(response, Chunk(reply, new ResponseMessage { Role = "assistant", Content = "" }, null), stop);
                if (!writable)
                    continue;
            }
            writable = e switch
            {
                TextDelta text => await WriteAsync(response, Chunk(reply, new ResponseMessage { Content = text.Text }, null), stop),
                ReasoningDelta reasoning => await WriteAsync(response, Chunk(reply, new ResponseMessage { ReasoningContent = reasoning.Text }, null), stop),
                ToolCallEvent call => await WriteAsync(response, Chunk(reply, new ResponseMessage { ToolCalls = [Wire(call.Call, toolIndex++)] }, null), stop),
                TurnFinished finished => await FinishAsync(response, reply, finished, includeUsage, stop),
                _ => true,
            };
        }
        return TurnResult.From(events);
    }

    private async Task<bool> FinishAsync(HttpResponse response, Reply reply, TurnFinished finished, bool includeUsage, CancellationTokenSource stop)
    {
        if (finished.Reason == FinishReason.Cancelled)
            return false;
        if (finished.Reason == FinishReason.Error)
        {
            // Headers are gone: the error travels as an event, as OpenAI does mid-stream.
            var error = new ApiException(StatusCodes.Status500InternalServerError, finished.Error ?? "the turn failed", null, "turn_failed").ToResponse();
            return await WriteRawAsync(response, JsonSerializer.SerializeToUtf8Bytes(error, OpenAiJson.Default.ErrorResponse), stop)
                && await WriteBytesAsync(response, s_done, stop);
        }
        CountTokens(finished);
        var last = Chunk(reply, new ResponseMessage(), FinishName(finished.Reason), TimingsOf(finished));
        if (!await WriteAsync(response, last, stop))
            return false;
        if (includeUsage)
        {
            var usage = new ChatCompletionResponse
            {
                Id = reply.Id,
                Object = "chat.completion.chunk",
                Created = reply.Created,
                Model = reply.Model,
                Choices = [],
                Usage = UsageOf(finished),
                Timings = TimingsOf(finished),
            };
            if (!await WriteAsync(response, usage, stop))
                return false;
        }
        return await WriteBytesAsync(response, s_done, stop);
    }

    private static ChatCompletionResponse Chunk(Reply reply, ResponseMessage delta, string? finishReason, Timings? timings = null) => new()
    {
        Id = reply.Id,
        Object = "chat.completion.chunk",
        Created = reply.Created,
        Model = reply.Model,
        Choices = [new Choice { Index = 0, Delta = delta, FinishReason = finishReason }],
        Timings = timings,
    };

    private static Task<bool> WriteAsync(HttpResponse response, ChatCompletionResponse chunk, CancellationTokenSource stop) =>
        WriteRawAsync(response, JsonSerializer.SerializeToUtf8Bytes(chunk, OpenAiJson.Default.ChatCompletionResponse), stop);

    private static async Task<bool> WriteRawAsync(HttpResponse response, byte[] json, CancellationTokenSource stop)
    {
        var buffer = new byte[s_dataPrefix.Length + json.Length + s_eventEnd.Length];
        s_dataPrefix.CopyTo(buffer, 0);
        json.CopyTo(buffer, s_dataPrefix.Length);
        s_eventEnd.CopyTo(buffer, s_dataPrefix.Length + json.Length);
        return await WriteBytesAsync(response, buffer, stop);
    }

    /// <summary>Writes and flushes one event; false (and the turn cancelled) when the client is gone.</summary>
    private static async Task<bool> WriteBytesAsync(HttpResponse response, byte[] bytes, CancellationTokenSource stop)
    {
        try
        {
            await response.Body.WriteAsync(bytes, stop.Token);
            await response.Body.FlushAsync(stop.Token);
            return true;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
        {
            stop.Cancel();
            return false;
        }
    }

    private static WireToolCall Wire(ToolCall call, int? index) => new()
    {
        Index = index,
        Id = call.Id,
        Type = "function",
        Function = new WireFunction { Name = call.Name, Arguments = call.ArgumentsJson },
    };

    /// <summary>OpenAI's finish reasons; a repetition cut-off is a stop.</summary>
    private static string FinishName(FinishReason reason) => reason switch
    {
        FinishReason.Length => "length",
        FinishReason.ToolCalls => "tool_calls",
        _ => "stop",
    };

    private static Usage UsageOf(TurnFinished finished) => new()
    {
        PromptTokens = finished.Usage.PromptTokens,
        CompletionTokens = finished.Usage.CompletionTokens,
        TotalTokens = finished.Usage.PromptTokens + finished.Usage.CompletionTokens,
        PromptTokensDetails = new PromptTokensDetails { CachedTokens = finished.Usage.CachedTokens },
        CompletionTokensDetails = new CompletionTokensDetails { ReasoningTokens = finished.Usage.ReasoningTokens },
    };

    /// <summary>llama-server's timings from the turn's usage and rates.</summary>
    private static Timings TimingsOf(TurnFinished finished)
    {
        var usage = finished.Usage;
        var t = finished.Timings;
        int computed = usage.PromptTokens - usage.CachedTokens;
        double promptMs = t.PrefillTokensPerSecond > 0 ? computed / t.PrefillTokensPerSecond * 1000 : 0;
        double predictedMs = Math.Max(0, t.TotalMs - t.TimeToFirstTokenMs);
        int decoded = Math.Max(0, usage.CompletionTokens - 1);
        return new Timings
        {
            CacheN = usage.CachedTokens,
            PromptN = computed,
            PromptMs = promptMs,
            PromptPerTokenMs = computed > 0 ? promptMs / computed : 0,
            PromptPerSecond = t.PrefillTokensPerSecond,
            PredictedN = usage.CompletionTokens,
            PredictedMs = predictedMs,
            PredictedPerTokenMs = decoded > 0 ? predictedMs / decoded : 0,
            PredictedPerSecond = t.DecodeTokensPerSecond,
            TtftMs = t.TimeToFirstTokenMs,
        };
    }

    private void CountTokens(TurnFinished finished)
    {
        telemetry.PromptTokens.Add(finished.Usage.PromptTokens);
        telemetry.CachedTokens.Add(finished.Usage.CachedTokens);
        telemetry.CompletionTokens.Add(finished.Usage.CompletionTokens);
    }

    private void Log(ConversationRouter.Lease lease, TurnResult? result)
    {
        if (result is null)
            return;
        var f = result.Finished;
        logger.LogInformation(
            "session {Session}: {Reason}, prompt {Prompt} tokens ({Cached} cached, {Reused} messages reused), {Completion} generated; ttft {Ttft:F0} ms, prefill {Prefill:F1} tok/s, decode {Decode:F1} tok/s",
            lease.Conversation.Id, f.Reason, f.Usage.PromptTokens, f.Usage.CachedTokens, lease.ReusedMessages, f.Usage.CompletionTokens,
            f.Timings.TimeToFirstTokenMs, f.Timings.PrefillTokensPerSecond, f.Timings.DecodeTokensPerSecond);
    }

    private sealed record Reply(string Id, long Created, string Model);
}
