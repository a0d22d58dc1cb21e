using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Tests;

public sealed class WorkerPoolTests
{
    private sealed class CountingJob(int maxChunks) : IParallelJob
    {
        public readonly int[] Hits = new int[maxChunks];
        public readonly int[] Workers = new int[4];

        public void Execute(int chunk, int worker)
        {
            Interlocked.Increment(ref Hits[chunk]);
            Interlocked.Increment(ref Workers[worker]);
        }
    }

    private sealed class FailingJob : IParallelJob
    {
        public void Execute(int chunk, int worker)
        {
            if (chunk == 3)
                throw new InvalidOperationException("chunk 3 failed");
        }
    }

    [Fact]
    public void EveryChunkRunsExactlyOnce_AcrossManyBackToBackJobs()
    {
        using var pool = new WorkerPool(3);
        Assert.Equal(3, pool.Workers);
        var random = new Random(7);
        var job = new CountingJob(1000);
        for (int run = 0; run < 1000; run++)
        {
            int chunks = random.Next(1, run % 50 == 0 ? 1000 : 20);
            Array.Clear(job.Hits);
            pool.Run(job, chunks);
            for (int i = 0; i < job.Hits.Length; i++)
                Assert.Equal(i < chunks ? 1 : 0, job.Hits[i]);
        }
        Assert.True(job.Workers[1] + job.Workers[2] > 0, "the pool's threads never took a chunk");
    }

    [Fact]
    public void AFailingChunk_SurfacesOnTheCaller_AndThePoolKeepsWorking()
    {
        using var pool = new WorkerPool(2);
        var error = Assert.Throws<InvalidOperationException>(() => pool.Run(new FailingJob(), 8));
        Assert.Equal("chunk 3 failed", error.Message);
        var job = new CountingJob(8);
        pool.Run(job, 8);
        Assert.All(job.Hits, hits => Assert.Equal(1, hits));
    }

    [Fact]
    public void SingleThreadPool_RunsOnTheCaller()
    {
        using var pool = new WorkerPool(1);
        var job = new CountingJob(10);
        pool.Run(job, 10);
        Assert.Equal(10, job.Workers[0]);
        pool.Run(job, 0);
        Assert.All(job.Hits, hits => Assert.Equal(1, hits));
    }
}
