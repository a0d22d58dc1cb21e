namespace Pipeline.Convert;

/// <summary>A conversion input (folder, tensor, imatrix entry, option) that cannot be used; the message names it.</summary>
public sealed class ConvertException(string message) : Exception(message);
