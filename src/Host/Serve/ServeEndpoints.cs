using Microsoft.AspNetCore.Http;
using Pipeline.Actors;
using Pipeline.Actors.Execution;

namespace Pipeline.Host.Serve;

/// <summary>The endpoints besides chat completions: health, models and llama-server's tokenizer and template helpers.</summary>
public static class ServeEndpoints
{
    /// <summary>The client, or 503 (with Retry-After) while the model loads, 500 when loading failed.</summary>
    public static PipelineClient ReadyClient(ModelHolder holder, HttpContext context)
    {
        if (holder.Client is { } client)
            return client;
        if (holder.Failure is { } failure)
            throw new ApiException(StatusCodes.Status500InternalServerError, $"loading the model failed: {failure}", null, "model_load_failed");
        context.Response.Headers.RetryAfter = "5";
        throw new ApiException(StatusCodes.Status503ServiceUnavailable, "the model is loading", null, "loading");
    }

    public static string ModelName(ServeOptions options, PipelineModel model) => options.ModelName ?? model.Name;

    public static async Task HealthAsync(HttpContext context, ModelHolder holder)
    {
        ReadyClient(holder, context);
        await context.Response.WriteAsJsonAsync(new HealthResponse { Status = "ok" }, OpenAiJson.Default.HealthResponse);
    }

    public static async Task ModelsAsync(HttpContext context, ModelHolder holder, ServeOptions options)
    {
        var client = ReadyClient(holder, context);
        var card = new ModelCard
        {
            Id = ModelName(options, client.Model),
            Created = new DateTimeOffset(File.GetLastWriteTimeUtc(Path.Combine(client.Model.Checkpoint.Directory, "config.json"))).ToUnixTimeSeconds(),
            MaxContext = client.Model.MaxContext(client.Settings),
        };
        await context.Response.WriteAsJsonAsync(new ModelList { Data = [card] }, OpenAiJson.Default.ModelList);
    }

    public static async Task TokenizeAsync(HttpContext context, ModelHolder holder)
    {
        var client = ReadyClient(holder, context);
        var body = await ApiJson.ReadAsync(context.Request, OpenAiJson.Default.TokenizeRequest, context.RequestAborted);
        string content = body.Content ?? throw ApiException.BadRequest("content is required", "$.content");
        var tokenizer = client.Model.Tokenizer;
        int[] ids = tokenizer.Encode(content, addSpecialTokens: body.AddSpecial ?? false);
        if (body.WithPieces == true)
        {
            var pieces = ids.Select(id => new TokenPiece { Id = id, Piece = tokenizer.Decode([id]) }).ToList();
            await context.Response.WriteAsJsonAsync(new TokenizePiecesResponse { Tokens = pieces }, OpenAiJson.Default.TokenizePiecesResponse);
            return;
        }
        await context.Response.WriteAsJsonAsync(new TokenizeResponse { Tokens = [.. ids] }, OpenAiJson.Default.TokenizeResponse);
    }

    public static async Task DetokenizeAsync(HttpContext context, ModelHolder holder)
    {
        var client = ReadyClient(holder, context);
        var body = await ApiJson.ReadAsync(context.Request, OpenAiJson.Default.DetokenizeRequest, context.RequestAborted);
        var ids = body.Tokens ?? throw ApiException.BadRequest("tokens is required", "$.tokens");
        int vocabulary = client.Model.Text.VocabSize;
        for (int i = 0; i < ids.Count; i++)
        {
            if ((uint)ids[i] >= (uint)vocabulary)
                throw ApiException.BadRequest($"token id {ids[i]} is outside the vocabulary of {vocabulary}", $"$.tokens[{i}]");
        }
        string text = client.Model.Tokenizer.Decode(ids.ToArray());
        await context.Response.WriteAsJsonAsync(new DetokenizeResponse { Content = text }, OpenAiJson.Default.DetokenizeResponse);
    }

    /// <summary>The prompt a chat completion request would run (its messages, tools and reasoning effort through the chat template).</summary>
    public static async Task ApplyTemplateAsync(HttpContext context, ModelHolder holder)
    {
        var client = ReadyClient(holder, context);
        var body = await ApiJson.ReadAsync(context.Request, OpenAiJson.Default.ChatCompletionRequest, context.RequestAborted);
        var request = RequestMapper.Map(body);
        string prompt = RequestMapper.Render(client.Model.ChatFormat, request.Messages, request.Options);
        await context.Response.WriteAsJsonAsync(new ApplyTemplateResponse { Prompt = prompt }, OpenAiJson.Default.ApplyTemplateResponse);
    }
}
