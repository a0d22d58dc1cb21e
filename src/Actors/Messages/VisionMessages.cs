using MessagePack;

namespace Pipeline.Actors.Messages;

/// <summary>
/// Images of a conversation for the vision encoder, in prompt order, each with its bytes
/// (<see cref="ImagePart.Data"/>; the session has resolved data: URIs). Answered by
/// <see cref="ImagesEncoded"/>, or <see cref="ImagesRejected"/> when an image cannot be decoded.
/// </summary>
[MessagePackObject]
public sealed record EncodeImages(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] IReadOnlyList<ImagePart> Images) : ISerializableMessage, IStageRequest
{
    string? IPipelineMessage.SessionId => SessionId;
    string IStageRequest.RequestId => Header.MessageId;
}

/// <summary>The images' projected embeddings, one [soft tokens, text hidden] array per image, in the request's order.</summary>
[LocalOnly("carries the images' embeddings (for the 31B about 6 MB of floats per 280-token image), handed to the session's prefill steps in this process as they are")]
public sealed record ImagesEncoded(
    MessageHeader Header,
    string SessionId,
    string TurnId,
    string RequestId,
    IReadOnlyList<float[]> Rows) : ILocalOnlyMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>An image of the request is not usable (corrupt, unsupported format, too large): the turn ends with <see cref="Reason"/>.</summary>
[MessagePackObject]
public sealed record ImagesRejected(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] string RequestId,
    [property: Key(4)] string Reason) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}
