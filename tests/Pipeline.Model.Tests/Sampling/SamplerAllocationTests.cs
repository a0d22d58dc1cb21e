using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

public class SamplerAllocationTests
{
    public static TheoryData<float, int, float, float> Modes => new()
    {
        { 0f, 0, 1f, 0f },         // greedy
        { 1f, 0, 1f, 0f },         // plain temperature over the whole vocabulary
        { 1f, 64, 0.95f, 0f },     // Gemma's generation_config
        { 0.7f, 0, 0.9f, 0f },     // top-p over the whole vocabulary
        { 1f, 0, 1f, 0.05f },      // min-p
        { 1f, 50_000, 0.95f, 0.01f },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public void SampleAndObserveAllocateNothingAfterConstruction(float temperature, int topK, float topP, float minP)
    {
        const int Vocab = 262_144;
        var logits = LogitGenerators.Make("softcapped", Vocab, 1);
        var sampler = new Sampler(Vocab, new SamplingOptions
        {
            Temperature = temperature,
            TopK = topK,
            TopP = topP,
            MinP = minP,
            Seed = 1,
            MaxConsecutiveRepeats = 8,
            NgramSize = 16,
            NgramRepeatLimit = 3,
        });
        sampler.Observe(sampler.Sample(logits)); // warm-up: JIT, static initializers

        long allocated = SteadyStateAllocations.Measure(() =>
        {
            for (int i = 0; i < 5; i++)
                sampler.Observe(sampler.Sample(logits));
        });

        Assert.Equal(0, allocated);
    }
}
