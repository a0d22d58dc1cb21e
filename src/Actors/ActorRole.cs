namespace Pipeline.Actors;

/// <summary>The kinds of pipeline actors; traces, metrics and fault injection are per role.</summary>
public enum ActorRole
{
    SessionManager,
    Session,
    Tokenizer,
    Executor,
    Sampler,
    Detokenizer,
    VisionEncoder,
}

public static class ActorRoles
{
    /// <summary>The role's name in config and traces: session-manager, session, tokenizer, executor, sampler, detokenizer, vision-encoder.</summary>
    public static string ConfigName(this ActorRole role) => role switch
    {
        ActorRole.SessionManager => "session-manager",
        ActorRole.Session => "session",
        ActorRole.Tokenizer => "tokenizer",
        ActorRole.Executor => "executor",
        ActorRole.Sampler => "sampler",
        ActorRole.Detokenizer => "detokenizer",
        ActorRole.VisionEncoder => "vision-encoder",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    public static ActorRole Parse(string name) =>
        Enum.GetValues<ActorRole>().FirstOrDefault(r => r.ConfigName() == name) is var role && role.ConfigName() == name
            ? role
            : throw new ArgumentException(
                $"unknown actor role '{name}' (expected one of {string.Join(", ", Enum.GetValues<ActorRole>().Select(r => r.ConfigName()))})",
                nameof(name));
}
