namespace Pipeline.Model.Sampling;

/// <summary>Why <see cref="Sampler.Observe"/> says generation should end, if it does.</summary>
public enum SamplerStop
{
    None,

    /// <summary><see cref="SamplingOptions.MaxConsecutiveRepeats"/> identical tokens in a row.</summary>
    RepeatedToken,

    /// <summary>A block of up to <see cref="SamplingOptions.NgramSize"/> tokens repeated more than <see cref="SamplingOptions.NgramRepeatLimit"/> times in a row.</summary>
    RepeatedNgram,
}
