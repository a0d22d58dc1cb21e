namespace Pipeline.Tokenizer.Templates;

/// <summary>
/// A template that cannot be compiled or rendered. <see cref="Line"/> and <see cref="Column"/> are 1-based
/// positions in the template source (0 when the error has no position, e.g. a bad render argument).
/// </summary>
public sealed class TemplateException : Exception
{
    public TemplateException(string message, int line = 0, int column = 0, string? templateName = null, Exception? inner = null)
        : base(Format(message, line, column, templateName), inner)
    {
        Reason = message;
        Line = line;
        Column = column;
        TemplateName = templateName;
    }

    /// <summary>The message without the position prefix.</summary>
    public string Reason { get; }

    public int Line { get; }

    public int Column { get; }

    public string? TemplateName { get; }

    /// <summary>True when the template itself called <c>raise_exception(msg)</c>.</summary>
    public bool RaisedByTemplate { get; init; }

    private static string Format(string message, int line, int column, string? name)
    {
        string where = name is null ? "template" : $"template '{name}'";
        return line > 0 ? $"{where}, line {line}, column {column}: {message}" : $"{where}: {message}";
    }
}
