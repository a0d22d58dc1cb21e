using System.Reflection;
using Akka.Actor;
using Akka.Configuration;
using Akka.Serialization;
using Pipeline.Actors.Hosting;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Serialization;
using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

public class SerializationTests
{
    private static readonly Type[] s_messageTypes = typeof(IPipelineMessage).Assembly.GetTypes()
        .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IPipelineMessage).IsAssignableFrom(t))
        .ToArray();

    [Fact]
    public void Every_message_type_is_either_serializable_or_local_only_with_a_reason()
    {
        Assert.NotEmpty(s_messageTypes);
        foreach (var type in s_messageTypes)
        {
            bool serializable = typeof(ISerializableMessage).IsAssignableFrom(type);
            bool local = typeof(ILocalOnlyMessage).IsAssignableFrom(type);
            Assert.True(serializable ^ local, $"{type.Name} must be exactly one of ISerializableMessage and ILocalOnlyMessage");
            var reason = type.GetCustomAttribute<LocalOnlyAttribute>()?.Reason;
            if (local)
                Assert.False(string.IsNullOrWhiteSpace(reason), $"{type.Name} is local-only but gives no [LocalOnly(reason)]");
            else
                Assert.Null(reason);
        }
    }

    [Fact]
    public void Samples_cover_every_serializable_message_type()
    {
        var sampled = MessageSamples.All().Select(m => m.GetType()).ToHashSet();
        var missing = MessagePackMessageSerializer.Types.Values.Where(t => !sampled.Contains(t)).Select(t => t.Name).ToArray();
        Assert.True(missing.Length == 0, "no sample for: " + string.Join(", ", missing));
    }

    public static TheoryData<string> SampleNames()
    {
        var data = new TheoryData<string>();
        foreach (var message in MessageSamples.All())
            data.Add(message.GetType().Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(SampleNames))]
    public void Serializable_message_round_trips_through_MessagePack(string name)
    {
        var original = MessageSamples.All().Single(m => m.GetType().Name == name);
        byte[] bytes = MessagePackMessageSerializer.Serialize(original);
        var copy = MessagePackMessageSerializer.Deserialize(bytes, name);

        Assert.IsType(original.GetType(), copy);
        Assert.Equal(MessagePackMessageSerializer.ToJson(original), MessagePackMessageSerializer.ToJson(copy));
        Assert.Equal(bytes, MessagePackMessageSerializer.Serialize(copy));
        Assert.Equal(original.Header, ((IPipelineMessage)copy).Header);
        // No field may be silently dropped: every public property must come back equal (collections by content).
        foreach (var property in original.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
            AssertDeepEqual(property.GetValue(original), property.GetValue(copy), $"{name}.{property.Name}");
    }

    [Fact]
    public void Akka_binds_serializable_messages_to_the_MessagePack_serializer()
    {
        using var system = ActorSystem.Create("serialization", PipelineConfig.Load());
        var serialization = system.Serialization;
        foreach (var message in MessageSamples.All())
        {
            var serializer = serialization.FindSerializerFor(message);
            Assert.IsType<MessagePackMessageSerializer>(serializer);
            string manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
            var copy = serialization.Deserialize(serializer.ToBinary(message), serializer.Identifier, manifest);
            Assert.Equal(MessagePackMessageSerializer.ToJson(message), MessagePackMessageSerializer.ToJson(copy));
        }
    }

    [Fact]
    public void Unknown_manifest_is_a_clear_error()
    {
        var e = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => MessagePackMessageSerializer.Deserialize([0x90], "NoSuchMessage"));
        Assert.Contains("NoSuchMessage", e.Message);
    }

    private static void AssertDeepEqual(object? expected, object? actual, string path)
    {
        if (expected is null || actual is null)
        {
            Assert.True(expected is null && actual is null, $"{path}: {expected} vs {actual}");
            return;
        }
        if (expected is string || expected.GetType().IsPrimitive || expected.GetType().IsEnum || expected is decimal)
        {
            Assert.True(expected.Equals(actual), $"{path}: {expected} vs {actual}");
            return;
        }
        if (expected is System.Collections.IEnumerable left && actual is System.Collections.IEnumerable right)
        {
            var a = left.Cast<object?>().ToArray();
            var b = right.Cast<object?>().ToArray();
            Assert.True(a.Length == b.Length, $"{path}: {a.Length} vs {b.Length} items");
            for (int i = 0; i < a.Length; i++)
                AssertDeepEqual(a[i], b[i], $"{path}[{i}]");
            return;
        }
        Assert.Equal(expected.GetType(), actual.GetType());
        var properties = expected.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0).ToArray();
        if (properties.Length == 0)
        {
            Assert.True(expected.Equals(actual), $"{path}: {expected} vs {actual}");
            return;
        }
        foreach (var property in properties)
        {
            if (property.DeclaringType == typeof(object) || property.Name == "EqualityContract")
                continue;
            AssertDeepEqual(property.GetValue(expected), property.GetValue(actual), $"{path}.{property.Name}");
        }
    }
}
