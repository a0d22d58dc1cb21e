using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Pipeline.Host.Serve;

/// <summary>A request the server refuses: the HTTP status and OpenAI's error object.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        413 => "invalid_request_error",
        429 => "rate_limit_error",
        503 => "unavailable_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static ApiException BadRequest(string message, string? param = null, string code = "invalid_request") =>
        new(StatusCodes.Status400BadRequest, message, param, code);

    public ErrorResponse ToResponse() => new() { Error = new ErrorBody { Message = Message, Type = Type, Param = Param, Code = Code } };

    /// <summary>Writes the error object with this status (the response must not have started).</summary>
    public Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        return response.WriteAsJsonAsync(ToResponse(), OpenAiJson.Default.ErrorResponse);
    }
}

public static class ApiJson
{
    /// <summary>
    /// Reads a JSON body into <typeparamref name="T"/>: malformed JSON, unknown members and wrong types
    /// become a 400 whose param is the JSON path; a body over the size limit becomes a 413.
    /// </summary>
    public static async Task<T> ReadAsync<T>(HttpRequest request, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken cancellation)
        where T : class
    {
        if (request.ContentLength is long length && request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize is long max && length > max)
            throw TooLarge(length, max);
        try
        {
            return await JsonSerializer.DeserializeAsync(request.Body, type, cancellation)
                ?? throw ApiException.BadRequest("the request body is JSON null; expected an object", "$", "invalid_json");
        }
        catch (JsonException e)
        {
            string path = e.Path ?? "$";
            string detail = e.Message;
            // System.Text.Json appends " Path: ... | LineNumber: ..." to its messages; the path is in param.
            int cut = detail.IndexOf(" Path:", StringComparison.Ordinal);
            if (cut > 0)
                detail = detail[..cut];
            throw ApiException.BadRequest($"invalid JSON at {path}: {detail}", path, "invalid_json");
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            long? limit = request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
            throw TooLarge(null, limit);
        }
    }

    private static ApiException TooLarge(long? length, long? max) =>
        new(StatusCodes.Status413PayloadTooLarge,
            $"the request body{(length is null ? "" : $" of {length} bytes")} exceeds the limit of {max} bytes (--max-body)", null, "body_too_large");
}
