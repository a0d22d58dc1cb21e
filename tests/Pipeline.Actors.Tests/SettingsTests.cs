using Akka.Configuration;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Hosting;

namespace Pipeline.Actors.Tests;

public class SettingsTests
{
    [Fact]
    public void Defaults_come_from_the_embedded_akka_hocon()
    {
        var settings = PipelineSettings.FromConfig(PipelineConfig.Load());
        Assert.Equal(1, settings.LayerGroups);
        Assert.True(settings.Batching);
        Assert.Equal("pipeline.dispatchers.kernel", settings.KernelDispatcher);
        Assert.Empty(settings.Faults);
        var config = PipelineConfig.Load();
        Assert.Equal("PinnedDispatcher", config.GetString("pipeline.dispatchers.kernel.type"));
        Assert.Equal("pipeline-msgpack", config.GetString("akka.actor.serialization-bindings.\"Pipeline.Actors.Messages.ISerializableMessage, Pipeline.Actors\""));
    }

    [Theory]
    [InlineData(1, "0-6")]
    [InlineData(2, "0-3 3-6")]
    [InlineData(4, "0-1 1-3 3-4 4-6")]
    [InlineData(6, "0-1 1-2 2-3 3-4 4-5 5-6")]
    public void Layer_groups_split_the_layers_evenly_into_contiguous_ranges(int groups, string expected)
    {
        var settings = PipelineSettings.FromConfig(PipelineConfig.Load($"pipeline.layer-groups = {groups}"));
        Assert.Equal(expected, string.Join(' ', settings.ResolveLayerGroups(6).Select(r => $"{r.First}-{r.End}")));
    }

    [Fact]
    public void Explicit_layer_ranges_are_taken_as_given()
    {
        var settings = PipelineSettings.FromConfig(PipelineConfig.Load("pipeline.layer-group-ranges = [\"0-4\", \"4-5\", \"5-6\"]"));
        Assert.Equal([(0, 4), (4, 5), (5, 6)], settings.ResolveLayerGroups(6));
    }

    [Theory]
    [InlineData("pipeline.layer-group-ranges = [\"0-2\", \"3-6\"]", "starts at layer 3")]
    [InlineData("pipeline.layer-group-ranges = [\"0-2\", \"2-5\"]", "end at layer 5; the model has 6 layers")]
    [InlineData("pipeline.layer-group-ranges = [\"0-x\"]", "'0-x' is not 'first-end'")]
    [InlineData("pipeline.layer-groups = 7", "layer-groups = 7 exceeds the model's 6 layers")]
    public void Bad_layer_ranges_are_one_clear_error(string hocon, string message)
    {
        var settings = PipelineSettings.FromConfig(PipelineConfig.Load(hocon));
        var e = Assert.Throws<ConfigurationException>(() => settings.ResolveLayerGroups(6));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("pipeline.layer-groups = 0", "pipeline.layer-groups = 0 must be positive")]
    [InlineData("pipeline.prefill-chunk = 1024", "prefill-chunk = 1024 must not exceed pipeline.max-batch-rows = 512")]
    [InlineData("pipeline.faults { enabled = on, sampler { probability = 1.5 } }", "pipeline.faults.sampler.probability = 1.5 must be in [0, 1]")]
    [InlineData("pipeline.faults { enabled = on, sampler { probability = 0.5, mode = explode } }", "mode = 'explode' must be 'throw' or 'kill'")]
    [InlineData("pipeline.batch-gather-wait = -5ms", "pipeline.batch-gather-wait = -5ms must be a duration of zero or more")]
    public void Bad_values_are_one_clear_error_naming_the_key(string hocon, string message)
    {
        var e = Assert.Throws<ConfigurationException>(() => PipelineSettings.FromConfig(PipelineConfig.Load(hocon)));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Faults_are_read_per_role()
    {
        var settings = PipelineSettings.FromConfig(PipelineConfig.Load(
            "pipeline.faults { enabled = on, seed = 9\n executor { probability = 0.25 }\n detokenizer { probability = 0.5, mode = kill } }"));
        Assert.Equal(new RoleFault(0.25, FaultMode.Throw), settings.Faults[ActorRole.Executor]);
        Assert.Equal(new RoleFault(0.5, FaultMode.Kill), settings.Faults[ActorRole.Detokenizer]);
        Assert.False(settings.Faults.ContainsKey(ActorRole.Session));
        Assert.Equal(9, settings.FaultSeed);
    }
}
