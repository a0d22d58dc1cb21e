using Akka.Actor;

namespace Pipeline.Actors.Faults;

public enum FaultMode
{
    /// <summary>The handler throws <see cref="InjectedFaultException"/> instead of handling the message.</summary>
    Throw,

    /// <summary>The actor dies as if sent Akka's Kill: <see cref="ActorKilledException"/> instead of handling the message.</summary>
    Kill,
}

/// <summary>A fault for one actor role: before each pipeline message it handles, with probability <see cref="Probability"/>.</summary>
public sealed record RoleFault(double Probability, FaultMode Mode);

/// <summary>Raised by fault injection (test-only configuration, pipeline.faults in akka.hocon).</summary>
public sealed class InjectedFaultException(ActorRole role, string messageType)
    : Exception($"injected fault in the {role.ConfigName()} actor while handling {messageType}")
{
    public ActorRole Role { get; } = role;
}

/// <summary>
/// Test-only chaos: makes actors of a role fail on a fraction of the pipeline messages they handle,
/// so supervision can be exercised. Off unless pipeline.faults.enabled = on. Thread-safe; a fixed
/// seed makes the sequence of draws repeatable (which actor draws first still depends on timing).
/// </summary>
public sealed class FaultInjector
{
    private readonly IReadOnlyDictionary<ActorRole, RoleFault> _faults;
    private readonly Random _random;
    private readonly long[] _injected = new long[Enum.GetValues<ActorRole>().Length];

    public FaultInjector(IReadOnlyDictionary<ActorRole, RoleFault> faults, int seed)
    {
        foreach (var (role, fault) in faults)
        {
            if (!(fault.Probability >= 0 && fault.Probability <= 1))
                throw new ArgumentException($"pipeline.faults.{role.ConfigName()}.probability = {fault.Probability} must be in [0, 1]", nameof(faults));
        }
        _faults = faults;
        _random = new Random(seed);
    }

    public static FaultInjector None { get; } = new(new Dictionary<ActorRole, RoleFault>(), 0);

    public bool Enabled => _faults.Count > 0;

    /// <summary>Switches injection off (and on again) without restarting anything, e.g. to check a system serves normally after chaos.</summary>
    public bool Active { get; set; } = true;

    /// <summary>Faults injected so far into actors of <paramref name="role"/>.</summary>
    public long Injected(ActorRole role) => Interlocked.Read(ref _injected[(int)role]);

    /// <summary>Throws the configured fault with its probability; otherwise returns.</summary>
    public void BeforeHandling(ActorRole role, object message)
    {
        if (!Active || !_faults.TryGetValue(role, out var fault) || fault.Probability <= 0)
            return;
        double draw;
        lock (_random)
            draw = _random.NextDouble();
        if (draw >= fault.Probability)
            return;
        Interlocked.Increment(ref _injected[(int)role]);
        string type = message.GetType().Name;
        throw fault.Mode == FaultMode.Kill
            ? new ActorKilledException($"injected kill of the {role.ConfigName()} actor while handling {type}")
            : new InjectedFaultException(role, type);
    }
}
