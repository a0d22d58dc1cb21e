namespace Pipeline.Model.Checkpoint;

/// <summary>
/// The one exception every checkpoint-loading failure raises: a malformed safetensors file, a bad
/// config, a missing or mis-shaped tensor. The message names the file, the tensor (when there is one)
/// and the offending values.
/// </summary>
public sealed class CheckpointFormatException : Exception
{
    public CheckpointFormatException(string filePath, string? tensorName, string detail, Exception? inner = null)
        : base(Format(filePath, tensorName, detail), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
        Detail = detail;
    }

    /// <summary>The file at fault (a safetensors file, an index, or a JSON config).</summary>
    public string FilePath { get; }

    /// <summary>The tensor at fault, or null when the problem is not about one tensor.</summary>
    public string? TensorName { get; }

    /// <summary>The message without the file and tensor prefix.</summary>
    public string Detail { get; }

    private static string Format(string filePath, string? tensorName, string detail) =>
        tensorName is null ? $"{filePath}: {detail}" : $"{filePath}: tensor '{tensorName}': {detail}";
}
