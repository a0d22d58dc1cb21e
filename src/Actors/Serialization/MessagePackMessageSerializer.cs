using System.Collections.Frozen;
using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Serialization;
using MessagePack;
using MessagePack.Resolvers;
using Pipeline.Actors.Messages;

namespace Pipeline.Actors.Serialization;

/// <summary>
/// Akka serializer for every <see cref="ISerializableMessage"/> (bound in config/akka.hocon): MessagePack
/// with the types' [Key] contracts; the manifest is the type's short name. Deserialization treats
/// input as untrusted (depth and collision-resistant hashing limits).
/// </summary>
public sealed class MessagePackMessageSerializer : SerializerWithStringManifest
{
    /// <summary>The identifier config/akka.hocon registers (Akka reserves 0..40 for itself).</summary>
    public const int Id = 7421;

    private static readonly MessagePackSerializerOptions s_options = MessagePackSerializerOptions.Standard
        .WithResolver(StandardResolver.Instance)
        .WithSecurity(MessagePackSecurity.UntrustedData);

    /// <summary>Every serializable message type in this assembly, by manifest.</summary>
    public static readonly FrozenDictionary<string, Type> Types = typeof(ISerializableMessage).Assembly.GetTypes()
        .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(ISerializableMessage).IsAssignableFrom(t))
        .ToFrozenDictionary(t => t.Name, StringComparer.Ordinal);

    public MessagePackMessageSerializer(ExtendedActorSystem system)
        : base(system)
    {
    }

    public override int Identifier => Id;

    public override string Manifest(object o) =>
        o is ISerializableMessage && Types.ContainsKey(o.GetType().Name)
            ? o.GetType().Name
            : throw new ArgumentException($"{o.GetType().FullName} is not a pipeline serializable message", nameof(o));

    public override byte[] ToBinary(object obj) => Serialize(obj);

    public override object FromBinary(byte[] bytes, string manifest) => Deserialize(bytes, manifest);

    /// <summary>MessagePack bytes of a serializable message (usable without an actor system).</summary>
    public static byte[] Serialize(object message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message is not ISerializableMessage)
            throw new ArgumentException($"{message.GetType().FullName} is not an ISerializableMessage", nameof(message));
        return MessagePackSerializer.Serialize(message.GetType(), message, s_options);
    }

    public static object Deserialize(byte[] bytes, string manifest)
    {
        if (!Types.TryGetValue(manifest, out var type))
            throw new SerializationException($"unknown pipeline message manifest '{manifest}'");
        return MessagePackSerializer.Deserialize(type, bytes, s_options)
            ?? throw new SerializationException($"pipeline message '{manifest}' deserialized to null");
    }

    /// <summary>The message as JSON, for comparing round trips and for diagnostics.</summary>
    public static string ToJson(object message) => MessagePackSerializer.ConvertToJson(Serialize(message), s_options);
}
