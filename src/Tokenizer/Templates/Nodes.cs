namespace Pipeline.Tokenizer.Templates;

// The template AST. Every node keeps its source position for error messages.

internal abstract class Node(int line, int column)
{
    public int Line { get; } = line;

    public int Column { get; } = column;
}

// ---------------------------------------------------------------- expressions

internal abstract class Expr(int line, int column) : Node(line, column);

internal sealed class ConstExpr(object? value, int line, int column) : Expr(line, column)
{
    public object? Value { get; } = value;
}

internal sealed class NameExpr(string name, int line, int column) : Expr(line, column)
{
    public string Name { get; } = name;
}

/// <summary><c>ns.attr</c> as an assignment target.</summary>
internal sealed class NamespaceRefExpr(string name, string attribute, int line, int column) : Expr(line, column)
{
    public string Name { get; } = name;

    public string Attribute { get; } = attribute;
}

internal sealed class ListExpr(Expr[] items, int line, int column) : Expr(line, column)
{
    public Expr[] Items { get; } = items;
}

internal sealed class TupleExpr(Expr[] items, int line, int column) : Expr(line, column)
{
    public Expr[] Items { get; } = items;
}

internal sealed class DictExpr((Expr Key, Expr Value)[] pairs, int line, int column) : Expr(line, column)
{
    public (Expr Key, Expr Value)[] Pairs { get; } = pairs;
}

internal sealed class GetAttrExpr(Expr target, string attribute, int line, int column) : Expr(line, column)
{
    public Expr Target { get; } = target;

    public string Attribute { get; } = attribute;
}

internal sealed class GetItemExpr(Expr target, Expr key, int line, int column) : Expr(line, column)
{
    public Expr Target { get; } = target;

    public Expr Key { get; } = key;
}

internal sealed class SliceExpr(Expr? start, Expr? stop, Expr? step, int line, int column) : Expr(line, column)
{
    public Expr? Start { get; } = start;

    public Expr? Stop { get; } = stop;

    public Expr? Step { get; } = step;
}

/// <summary>Arguments as written at a call, filter or test site.</summary>
internal sealed class ArgList(Expr[] positional, (string Name, Expr Value)[] named, Expr? starArgs, Expr? starKwargs)
{
    public static readonly ArgList Empty = new([], [], null, null);

    public Expr[] Positional { get; } = positional;

    public (string Name, Expr Value)[] Named { get; } = named;

    public Expr? StarArgs { get; } = starArgs;

    public Expr? StarKwargs { get; } = starKwargs;
}

internal sealed class CallExpr(Expr target, ArgList args, int line, int column) : Expr(line, column)
{
    public Expr Target { get; } = target;

    public ArgList Args { get; } = args;
}

/// <summary><c>value | name(args)</c>; <see cref="Target"/> is null in <c>{% filter %}</c> and <c>{% set x | f %}</c> blocks.
/// <see cref="Filter"/> is null when the filter is unknown and the error is deferred to render time (inside an if).</summary>
internal sealed class FilterExpr(Expr? target, string name, ArgList args, FilterFunction? filter, int line, int column) : Expr(line, column)
{
    public Expr? Target { get; } = target;

    public string Name { get; } = name;

    public ArgList Args { get; } = args;

    public FilterFunction? Filter { get; } = filter;
}

internal sealed class TestExpr(Expr target, string name, ArgList args, TestFunction? test, int line, int column) : Expr(line, column)
{
    public Expr Target { get; } = target;

    public string Name { get; } = name;

    public ArgList Args { get; } = args;

    public TestFunction? Test { get; } = test;
}

internal enum UnaryOp
{
    Not,
    Negate,
    Plus,
}

internal sealed class UnaryExpr(UnaryOp op, Expr operand, int line, int column) : Expr(line, column)
{
    public UnaryOp Op { get; } = op;

    public Expr Operand { get; } = operand;
}

internal enum BinaryOp
{
    Add,
    Subtract,
    Multiply,
    Divide,
    FloorDivide,
    Modulo,
    Power,
    And,
    Or,
}

internal sealed class BinaryExpr(BinaryOp op, Expr left, Expr right, int line, int column) : Expr(line, column)
{
    public BinaryOp Op { get; } = op;

    public Expr Left { get; } = left;

    public Expr Right { get; } = right;
}

/// <summary><c>a ~ b ~ c</c>: string concatenation of every part.</summary>
internal sealed class ConcatExpr(Expr[] parts, int line, int column) : Expr(line, column)
{
    public Expr[] Parts { get; } = parts;
}

/// <summary>A comparison chain such as <c>a &lt; b &lt;= c</c> or <c>x not in y</c>.</summary>
internal sealed class CompareExpr(Expr first, (string Op, Expr Operand)[] rest, int line, int column) : Expr(line, column)
{
    public Expr First { get; } = first;

    public (string Op, Expr Operand)[] Rest { get; } = rest;
}

/// <summary><c>a if test else b</c>; a missing else yields undefined.</summary>
internal sealed class ConditionalExpr(Expr test, Expr then, Expr? otherwise, int line, int column) : Expr(line, column)
{
    public Expr Test { get; } = test;

    public Expr Then { get; } = then;

    public Expr? Otherwise { get; } = otherwise;
}

// ---------------------------------------------------------------- statements

internal abstract class Stmt(int line, int column) : Node(line, column);

/// <summary>Literal text and <c>{{ }}</c> expressions, in order. Items are strings or <see cref="Expr"/>.</summary>
internal sealed class OutputStmt(object[] items, int line, int column) : Stmt(line, column)
{
    public object[] Items { get; } = items;
}

internal sealed class ForStmt(Expr target, Expr iterable, Expr? condition, Stmt[] body, Stmt[] otherwise, int line, int column)
    : Stmt(line, column)
{
    public Expr Target { get; } = target;

    public Expr Iterable { get; } = iterable;

    public Expr? Condition { get; } = condition;

    public Stmt[] Body { get; } = body;

    public Stmt[] Otherwise { get; } = otherwise;
}

internal sealed class IfStmt((Expr Test, Stmt[] Body)[] branches, Stmt[] otherwise, int line, int column) : Stmt(line, column)
{
    public (Expr Test, Stmt[] Body)[] Branches { get; } = branches;

    public Stmt[] Otherwise { get; } = otherwise;
}

internal sealed class SetStmt(Expr target, Expr value, int line, int column) : Stmt(line, column)
{
    public Expr Target { get; } = target;

    public Expr Value { get; } = value;
}

/// <summary><c>{% set x %}...{% endset %}</c>, optionally with a filter applied to the captured text.</summary>
internal sealed class SetBlockStmt(Expr target, FilterExpr? filter, Stmt[] body, int line, int column) : Stmt(line, column)
{
    public Expr Target { get; } = target;

    public FilterExpr? Filter { get; } = filter;

    public Stmt[] Body { get; } = body;
}

internal sealed class MacroDefinition(string name, string[] parameters, Expr[] defaults, Stmt[] body, int line, int column)
{
    public string Name { get; } = name;

    public string[] Parameters { get; } = parameters;

    /// <summary>Defaults of the last <c>Defaults.Length</c> parameters.</summary>
    public Expr[] Defaults { get; } = defaults;

    public Stmt[] Body { get; } = body;

    public int Line { get; } = line;

    public int Column { get; } = column;

    // Jinja2 lets a macro take extra arguments only when its body mentions varargs/kwargs.
    public bool UsesVarargs { get; init; }

    public bool UsesKwargs { get; init; }

    public bool UsesCaller { get; init; }
}

internal sealed class MacroStmt(MacroDefinition definition, int line, int column) : Stmt(line, column)
{
    public MacroDefinition Definition { get; } = definition;
}

/// <summary><c>{% call(args) macro(...) %}body{% endcall %}</c>: the body becomes <c>caller()</c>.</summary>
internal sealed class CallBlockStmt(MacroDefinition caller, CallExpr call, int line, int column) : Stmt(line, column)
{
    public MacroDefinition Caller { get; } = caller;

    public CallExpr Call { get; } = call;
}

internal sealed class FilterBlockStmt(FilterExpr filter, Stmt[] body, int line, int column) : Stmt(line, column)
{
    public FilterExpr Filter { get; } = filter;

    public Stmt[] Body { get; } = body;
}

internal sealed class WithStmt((Expr Target, Expr Value)[] assignments, Stmt[] body, int line, int column) : Stmt(line, column)
{
    public (Expr Target, Expr Value)[] Assignments { get; } = assignments;

    public Stmt[] Body { get; } = body;
}

/// <summary>A body rendered in its own scope: transformers' <c>{% generation %}</c> block.</summary>
internal sealed class ScopeStmt(Stmt[] body, int line, int column) : Stmt(line, column)
{
    public Stmt[] Body { get; } = body;
}

internal sealed class BreakStmt(int line, int column) : Stmt(line, column);

internal sealed class ContinueStmt(int line, int column) : Stmt(line, column);
