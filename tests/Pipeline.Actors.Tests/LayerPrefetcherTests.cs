using Pipeline.Actors.Execution;
using Pipeline.Actors.Tests.Infrastructure;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Actors.Tests;

public class LayerPrefetcherTests
{
    [Fact]
    public void ALayerThePageCacheHoldsIsNotTouchedAgain()
    {
        using var checkpoint = Gemma4Checkpoint.Open(TestPaths.TinyModel);
        // Reading the files puts every page of the weights in the page cache.
        foreach (var file in Directory.EnumerateFiles(TestPaths.TinyModel, "*.safetensors"))
            File.ReadAllBytes(file);

        using var prefetcher = new LayerPrefetcher(checkpoint);
        prefetcher.Request(0);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (prefetcher.Prefetched < 1 && DateTime.UtcNow < deadline)
            Thread.Sleep(5);

        Assert.Equal(1, prefetcher.Prefetched);
        Assert.Equal(prefetcher.RegionCount(0), prefetcher.RegionsAlreadyResident);

        // Found resident just now: the next step's request is not even checked.
        prefetcher.Request(0);
        Thread.Sleep(50);
        Assert.Equal(1, prefetcher.Prefetched);
    }
}
