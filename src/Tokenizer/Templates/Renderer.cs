using System.Runtime.CompilerServices;
using System.Text;

namespace Pipeline.Tokenizer.Templates;

/// <summary>A variable scope. Loop iterations, macro calls and blocks get a child scope; lookups walk up to the
/// render context and then the globals, at the time of the lookup (like Jinja2's late-bound closures).</summary>
internal sealed class Scope(Scope? parent)
{
    public Dictionary<string, object?> Vars { get; } = new(StringComparer.Ordinal);

    public Scope? Parent { get; } = parent;

    public bool TryLookup(string name, out object? value)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
        {
            if (scope.Vars.TryGetValue(name, out value))
                return true;
        }
        value = null;
        return false;
    }
}

/// <summary>The loop object of a for loop.</summary>
internal sealed class LoopContext(List<object?> items)
{
    private object? lastChanged = Undefined.Instance;
    private bool changedCalled;

    public List<object?> Items { get; } = items;

    public int Index0 { get; set; }

    public int Length => Items.Count;

    public object? Attribute(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(Length - Index0),
        "revindex0" => (long)(Length - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => (long)Length,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Length ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BoundMethod(this, "cycle", (_, args) =>
        {
            if (args.Positional.Count == 0)
                throw new JinjaError("no items for cycling given");
            return args.Positional[Index0 % args.Positional.Count];
        }),
        "changed" => new BoundMethod(this, "changed", (_, args) =>
        {
            object value = new PyTuple([.. args.Positional]);
            if (changedCalled && Py.Equal(value, lastChanged))
                return false;
            changedCalled = true;
            lastChanged = value;
            return true;
        }),
        _ => Undefined.NoAttribute(this, name),
    };
}

/// <summary>A <c>{% macro %}</c> (or a call block's <c>caller</c>) bound to the scope it was defined in.</summary>
internal sealed class Macro(MacroDefinition definition, Scope closure) : JinjaCallable
{
    public MacroDefinition Definition { get; } = definition;

    public override string Name => Definition.Name;

    public override object? Invoke(Renderer renderer, CallArgs args) => renderer.CallMacro(this, closure, args);
}

/// <summary>Executes a parsed template. One instance per render call; the parsed template is shared.</summary>
internal sealed class Renderer
{
    private const int MaxMacroDepth = 200;
    private const int MaxOutputChars = 256 << 20;

    private readonly Scope globals;
    private readonly string? templateName;
    private readonly long stepBudget;
    private int macroDepth;
    private long steps;

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    public Renderer(Scope globals, string? templateName, long stepBudget)
    {
        this.globals = globals;
        this.templateName = templateName;
        this.stepBudget = stepBudget;
    }

    public string Render(Stmt[] body)
    {
        var output = new StringBuilder();
        var root = new Scope(globals);
        try
        {
            Exec(body, root, output);
        }
        catch (InsufficientExecutionStackException e)
        {
            throw new TemplateException("template recursion is too deep", 0, 0, templateName, e);
        }
        return output.ToString();
    }

    private TemplateException Located(JinjaError error, Node at) =>
        new(error.Message, at.Line, at.Column, templateName, error) { RaisedByTemplate = error.RaisedByTemplate };

    private void Step(long count = 1)
    {
        steps += count;
        if (steps > stepBudget)
            throw new JinjaError("the template ran too long (loop/call budget exceeded)");
    }

    // ---------------------------------------------------------------- statements

    private Flow Exec(Stmt[] body, Scope scope, StringBuilder output)
    {
        foreach (var stmt in body)
        {
            var flow = Exec(stmt, scope, output);
            if (flow != Flow.Normal)
                return flow;
        }
        return Flow.Normal;
    }

    private Flow Exec(Stmt stmt, Scope scope, StringBuilder output)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        try
        {
            switch (stmt)
            {
                case OutputStmt o:
                    foreach (var item in o.Items)
                    {
                        if (item is string text)
                            output.Append(text);
                        else
                            output.Append(Py.Str(Eval((Expr)item, scope)));
                    }
                    if (output.Length > MaxOutputChars)
                        throw new JinjaError("the rendered text is too large");
                    return Flow.Normal;
                case IfStmt i:
                    foreach (var (test, branch) in i.Branches)
                    {
                        if (Py.IsTruthy(Eval(test, scope)))
                            return Exec(branch, scope, output);
                    }
                    return Exec(i.Otherwise, scope, output);
                case ForStmt f:
                    return ExecFor(f, scope, output);
                case SetStmt s:
                    Assign(s.Target, Eval(s.Value, scope), scope);
                    return Flow.Normal;
                case SetBlockStmt sb:
                    {
                        var captured = new StringBuilder();
                        Exec(sb.Body, new Scope(scope), captured);
                        object? value = captured.ToString();
                        if (sb.Filter is not null)
                            value = ApplyFilterChain(sb.Filter, value, scope);
                        Assign(sb.Target, value, scope);
                        return Flow.Normal;
                    }
                case MacroStmt m:
                    scope.Vars[m.Definition.Name] = new Macro(m.Definition, scope);
                    return Flow.Normal;
                case CallBlockStmt cb:
                    {
                        var caller = new Macro(cb.Caller, scope);
                        var target = Eval(cb.Call.Target, scope);
                        var args = EvalArgs(cb.Call.Args, scope);
                        args.Named.Add(new("caller", caller));
                        output.Append(Py.Str(Call(target, args)));
                        return Flow.Normal;
                    }
                case FilterBlockStmt fb:
                    {
                        var captured = new StringBuilder();
                        Exec(fb.Body, new Scope(scope), captured);
                        output.Append(Py.Str(ApplyFilterChain(fb.Filter, captured.ToString(), scope)));
                        return Flow.Normal;
                    }
                case WithStmt w:
                    {
                        var values = w.Assignments.Select(a => Eval(a.Value, scope)).ToList();
                        var inner = new Scope(scope);
                        for (int k = 0; k < values.Count; k++)
                            Assign(w.Assignments[k].Target, values[k], inner);
                        return Exec(w.Body, inner, output);
                    }
                case ScopeStmt sc:
                    return Exec(sc.Body, new Scope(scope), output);
                case BreakStmt:
                    return Flow.Break;
                case ContinueStmt:
                    return Flow.Continue;
                default:
                    throw new JinjaError($"unsupported statement {stmt.GetType().Name}");
            }
        }
        catch (JinjaError e)
        {
            throw Located(e, stmt);
        }
    }

    private Flow ExecFor(ForStmt f, Scope scope, StringBuilder output)
    {
        var items = Py.ToList(Eval(f.Iterable, scope));
        if (f.Condition is not null)
        {
            var kept = new List<object?>(items.Count);
            foreach (var item in items)
            {
                Step();
                var filterScope = new Scope(scope);
                Assign(f.Target, item, filterScope);
                if (Py.IsTruthy(Eval(f.Condition, filterScope)))
                    kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
            return Exec(f.Otherwise, scope, output);
        var loop = new LoopContext(items);
        for (int i = 0; i < items.Count; i++)
        {
            Step();
            loop.Index0 = i;
            var iteration = new Scope(scope);
            iteration.Vars["loop"] = loop;
            Assign(f.Target, items[i], iteration);
            if (Exec(f.Body, iteration, output) == Flow.Break)
                break;
        }
        return Flow.Normal;
    }

    private void Assign(Expr target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameExpr n:
                scope.Vars[n.Name] = value;
                return;
            case NamespaceRefExpr r:
                if (!scope.TryLookup(r.Name, out var ns) || ns is not Namespace space)
                    throw new JinjaError("cannot assign attribute on non-namespace object");
                space.Attributes[r.Attribute] = value;
                return;
            case TupleExpr t:
                var items = Py.ToList(value);
                if (items.Count > t.Items.Length)
                    throw new JinjaError($"too many values to unpack (expected {t.Items.Length})");
                if (items.Count < t.Items.Length)
                    throw new JinjaError($"not enough values to unpack (expected {t.Items.Length}, got {items.Count})");
                for (int i = 0; i < items.Count; i++)
                    Assign(t.Items[i], items[i], scope);
                return;
            default:
                throw new JinjaError("invalid assignment target");
        }
    }

    // ---------------------------------------------------------------- expressions

    public object? Eval(Expr expr, Scope scope)
    {
        try
        {
            return EvalCore(expr, scope);
        }
        catch (JinjaError e)
        {
            throw Located(e, expr);
        }
    }

    private object? EvalCore(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case ConstExpr c:
                return c.Value;
            case NameExpr n:
                return scope.TryLookup(n.Name, out var value) ? value : Undefined.Missing(n.Name);
            case ListExpr l:
                return l.Items.Select(i => Eval(i, scope)).ToList();
            case TupleExpr t:
                return new PyTuple([.. t.Items.Select(i => Eval(i, scope))]);
            case DictExpr d:
                var dict = new PyDict();
                foreach (var (k, v) in d.Pairs)
                    dict.Set(Eval(k, scope), Eval(v, scope));
                return dict;
            case GetAttrExpr ga:
                return Members.GetAttribute(Eval(ga.Target, scope), ga.Attribute);
            case GetItemExpr gi:
                {
                    var target = Eval(gi.Target, scope);
                    if (gi.Key is SliceExpr slice)
                    {
                        if (target is Undefined undefined)
                            throw new JinjaError(undefined.Hint);
                        return Py.Slice(target,
                            slice.Start is null ? null : Eval(slice.Start, scope),
                            slice.Stop is null ? null : Eval(slice.Stop, scope),
                            slice.Step is null ? null : Eval(slice.Step, scope));
                    }
                    return Members.GetItem(target, Eval(gi.Key, scope));
                }
            case CallExpr call:
                return Call(Eval(call.Target, scope), EvalArgs(call.Args, scope));
            case FilterExpr f:
                return ApplyFilterChain(f, null, scope);
            case TestExpr t:
                {
                    if (t.Test is null)
                        throw new JinjaError($"No test named '{t.Name}' found.");
                    var subject = Eval(t.Target, scope);
                    return t.Test(this, subject, EvalArgs(t.Args, scope));
                }
            case UnaryExpr u:
                {
                    var operand = Eval(u.Operand, scope);
                    return u.Op switch
                    {
                        UnaryOp.Not => !Py.IsTruthy(operand),
                        UnaryOp.Negate => Py.Negate(operand),
                        _ => Py.Plus(operand),
                    };
                }
            case BinaryExpr b:
                return EvalBinary(b, scope);
            case ConcatExpr cc:
                {
                    var sb = new StringBuilder();
                    foreach (var part in cc.Parts)
                        sb.Append(Py.Str(Eval(part, scope)));
                    return sb.ToString();
                }
            case CompareExpr cmp:
                return EvalCompare(cmp, scope);
            case ConditionalExpr cond:
                if (Py.IsTruthy(Eval(cond.Test, scope)))
                    return Eval(cond.Then, scope);
                return cond.Otherwise is null
                    ? new Undefined("the inline if-expression evaluated to false and no else section was defined.")
                    : Eval(cond.Otherwise, scope);
            case SliceExpr:
                throw new JinjaError("slices are only allowed in subscripts");
            case NamespaceRefExpr:
                throw new JinjaError("namespace references are only allowed as assignment targets");
            default:
                throw new JinjaError($"unsupported expression {expr.GetType().Name}");
        }
    }

    private object? EvalBinary(BinaryExpr b, Scope scope)
    {
        var left = Eval(b.Left, scope);
        switch (b.Op)
        {
            case BinaryOp.And:
                return Py.IsTruthy(left) ? Eval(b.Right, scope) : left;
            case BinaryOp.Or:
                return Py.IsTruthy(left) ? left : Eval(b.Right, scope);
        }
        var right = Eval(b.Right, scope);
        return b.Op switch
        {
            BinaryOp.Add => Py.Add(left, right),
            BinaryOp.Subtract => Py.Subtract(left, right),
            BinaryOp.Multiply => Py.Multiply(left, right),
            BinaryOp.Divide => Py.TrueDivide(left, right),
            BinaryOp.FloorDivide => Py.FloorDivide(left, right),
            BinaryOp.Modulo => Py.Modulo(left, right),
            _ => Py.Power(left, right),
        };
    }

    private bool EvalCompare(CompareExpr cmp, Scope scope)
    {
        var left = Eval(cmp.First, scope);
        foreach (var (op, operand) in cmp.Rest)
        {
            var right = Eval(operand, scope);
            bool ok = op switch
            {
                "==" => Py.Equal(left, right),
                "!=" => !Py.Equal(left, right),
                "<" => Py.Compare(left, right, op) < 0,
                "<=" => Py.Compare(left, right, op) <= 0,
                ">" => Py.Compare(left, right, op) > 0,
                ">=" => Py.Compare(left, right, op) >= 0,
                "in" => Py.Contains(right, left),
                _ => !Py.Contains(right, left),
            };
            if (!ok)
                return false;
            left = right;
        }
        return true;
    }

    private object? ApplyFilterChain(FilterExpr f, object? blockValue, Scope scope)
    {
        var value = f.Target is null ? blockValue
            : f.Target is FilterExpr inner ? ApplyFilterChain(inner, blockValue, scope)
            : Eval(f.Target, scope);
        try
        {
            if (f.Filter is null)
                throw new JinjaError($"No filter named '{f.Name}' found.");
            return f.Filter(this, value, EvalArgs(f.Args, scope));
        }
        catch (JinjaError e)
        {
            throw Located(e, f);
        }
    }

    private CallArgs EvalArgs(ArgList args, Scope scope)
    {
        var positional = new List<object?>(args.Positional.Length);
        foreach (var p in args.Positional)
            positional.Add(Eval(p, scope));
        var named = new List<KeyValuePair<string, object?>>(args.Named.Length);
        foreach (var (name, value) in args.Named)
            named.Add(new(name, Eval(value, scope)));
        if (args.StarArgs is not null)
            positional.AddRange(Py.Iterate(Eval(args.StarArgs, scope)));
        if (args.StarKwargs is not null)
        {
            if (Eval(args.StarKwargs, scope) is not PyDict extra)
                throw new JinjaError("argument after ** must be a mapping");
            foreach (var (k, v) in extra.Items)
                named.Add(new(k as string ?? throw new JinjaError("keywords must be strings"), v));
        }
        return new CallArgs(positional, named);
    }

    public object? Call(object? target, CallArgs args) => target switch
    {
        JinjaCallable callable => callable.Invoke(this, args),
        Undefined u => throw new JinjaError(u.Hint),
        _ => throw new JinjaError($"'{Py.TypeName(target)}' object is not callable"),
    };

    public string CallMacro(Macro macro, Scope closure, CallArgs args)
    {
        var definition = macro.Definition;
        if (macroDepth >= MaxMacroDepth || !RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new JinjaError("maximum recursion depth exceeded in macro calls");
        Step();
        var scope = new Scope(closure);
        var parameters = definition.Parameters;
        int firstDefault = parameters.Length - definition.Defaults.Length;
        var set = new bool[parameters.Length];
        for (int i = 0; i < Math.Min(args.Positional.Count, parameters.Length); i++)
        {
            scope.Vars[parameters[i]] = args.Positional[i];
            set[i] = true;
        }
        if (args.Positional.Count > parameters.Length && !definition.UsesVarargs)
            throw new JinjaError($"macro '{definition.Name}' takes not more than {parameters.Length} argument(s)");
        var kwargs = new PyDict();
        object? caller = null;
        foreach (var (name, value) in args.Named)
        {
            int index = Array.IndexOf(parameters, name);
            if (index >= 0)
            {
                if (set[index])
                    throw new JinjaError($"macro '{definition.Name}' got multiple values for argument '{name}'");
                scope.Vars[name] = value;
                set[index] = true;
            }
            else if (name == "caller" && definition.UsesCaller)
                caller = value;
            else if (definition.UsesKwargs)
                kwargs.Set(name, value);
            else
                throw new JinjaError($"macro '{definition.Name}' takes no keyword argument '{name}'");
        }
        for (int i = 0; i < parameters.Length; i++)
        {
            if (set[i])
                continue;
            scope.Vars[parameters[i]] = i >= firstDefault
                ? Eval(definition.Defaults[i - firstDefault], scope)
                : new Undefined($"parameter '{parameters[i]}' was not provided");
        }
        if (definition.UsesVarargs)
            scope.Vars["varargs"] = new PyTuple([.. args.Positional.Skip(parameters.Length)]);
        if (definition.UsesKwargs)
            scope.Vars["kwargs"] = kwargs;
        if (definition.UsesCaller)
            scope.Vars["caller"] = caller ?? new Undefined("No caller defined");
        var output = new StringBuilder();
        macroDepth++;
        try
        {
            Exec(definition.Body, scope, output);
        }
        finally
        {
            macroDepth--;
        }
        return output.ToString();
    }

    /// <summary>Applies a filter by name (for <c>map('upper')</c> and similar).</summary>
    public object? ApplyFilter(string name, object? value, CallArgs args)
    {
        if (!Filters.Table.TryGetValue(name, out var filter))
            throw new JinjaError($"No filter named '{name}'.");
        return filter(this, value, args);
    }

    /// <summary>Applies a test by name (for <c>select('odd')</c> and similar).</summary>
    public bool ApplyTest(string name, object? value, CallArgs args)
    {
        if (!Tests.Table.TryGetValue(name, out var test))
            throw new JinjaError($"No test named '{name}'.");
        return test(this, value, args);
    }
}
