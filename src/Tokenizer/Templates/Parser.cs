namespace Pipeline.Tokenizer.Templates;

/// <summary>Recursive-descent parser with Jinja2's grammar and operator precedence.</summary>
internal sealed class Parser
{
    private static readonly HashSet<string> UnsupportedTags =
        ["block", "extends", "include", "import", "from", "autoescape", "do", "trans", "pluralize"];

    private readonly List<Token> tokens;
    private readonly string? name;
    private readonly Stack<(string Tag, string[] EndTags)> openBlocks = new();
    private int index;
    private int depth;

    // Inside if statements and conditional expressions an unknown filter or test only fails when evaluated
    // (Jinja2 does the same, so that `{% if 'x' is filter %}` guards work).
    private bool soft;

    private Parser(List<Token> tokens, string? name)
    {
        this.tokens = tokens;
        this.name = name;
    }

    public static Stmt[] Parse(string source, string? name)
    {
        var parser = new Parser(Lexer.Tokenize(source, name), name);
        var body = parser.ParseBody(null);
        return body;
    }

    private Token Current => tokens[index];

    private Token Peek(int offset = 1) => tokens[Math.Min(index + offset, tokens.Count - 1)];

    private Token Next() => tokens[index < tokens.Count - 1 ? index++ : index];

    private TemplateException Fail(string message, Token at) => new(message, at.Line, at.Column, name);

    private Token Expect(TokenKind kind, string? text = null)
    {
        var token = Current;
        if (token.Kind != kind || (text is not null && token.Text != text))
        {
            string wanted = text ?? kind switch
            {
                TokenKind.Name => "name",
                TokenKind.BlockEnd => "end of statement block",
                TokenKind.VariableEnd => "end of print statement",
                _ => kind.ToString().ToLowerInvariant(),
            };
            if (token.Kind == TokenKind.Eof)
                throw Fail($"unexpected end of template, expected '{wanted}'", token);
            throw Fail($"expected token '{wanted}', got '{token.Describe()}'", token);
        }
        return Next();
    }

    private bool SkipOp(string op)
    {
        if (!Current.IsOp(op))
            return false;
        Next();
        return true;
    }

    private bool SkipName(string word)
    {
        if (!Current.IsName(word))
            return false;
        Next();
        return true;
    }

    private void Enter(Token at)
    {
        if (++depth > 400)
            throw Fail("template is nested too deeply", at);
    }

    // ---------------------------------------------------------------- statements

    /// <summary>Parses template data, output and statements until a block whose tag is one of <paramref name="endTags"/>
    /// (left as the current token, right after the block-begin) or the end of the template.</summary>
    private Stmt[] ParseBody(string[]? endTags)
    {
        var body = new List<Stmt>();
        var output = new List<object>();
        int outputLine = 0, outputColumn = 0;

        void Flush()
        {
            if (output.Count > 0)
            {
                body.Add(new OutputStmt([.. output], outputLine, outputColumn));
                output.Clear();
            }
        }

        void AddOutput(object item, Token at)
        {
            if (output.Count == 0)
            {
                outputLine = at.Line;
                outputColumn = at.Column;
            }
            output.Add(item);
        }

        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.Data:
                    AddOutput(token.Text, token);
                    Next();
                    break;
                case TokenKind.VariableBegin:
                    Next();
                    AddOutput(ParseTuple(withCondition: true), token);
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    Flush();
                    Next();
                    if (endTags is not null && Current.Kind == TokenKind.Name && endTags.Contains(Current.Text))
                        return [.. body];
                    body.Add(ParseStatement());
                    Expect(TokenKind.BlockEnd);
                    break;
                case TokenKind.Eof:
                    Flush();
                    if (endTags is not null)
                        throw FailEof(token);
                    return [.. body];
                default:
                    throw Fail($"unexpected '{token.Describe()}'", token);
            }
        }
    }

    private TemplateException FailEof(Token at)
    {
        var (tag, endTags) = openBlocks.Peek();
        string expected = string.Join(" or ", endTags.Select(t => $"'{t}'"));
        return Fail($"Unexpected end of template. Jinja was looking for the following tags: {expected}. " +
            $"The innermost block that needs to be closed is '{tag}'.", at);
    }

    /// <summary>Parses a statement body after the tag's own tokens: expects the block end, then statements up to one of
    /// <paramref name="endTags"/>; returns with the end tag's name as the current token.</summary>
    private Stmt[] ParseBlockBody(string tag, params string[] endTags)
    {
        Expect(TokenKind.BlockEnd);
        openBlocks.Push((tag, endTags));
        try
        {
            return ParseBody(endTags);
        }
        finally
        {
            openBlocks.Pop();
        }
    }

    private Stmt ParseStatement()
    {
        var token = Current;
        if (token.Kind != TokenKind.Name)
            throw Fail("tag name expected", token);
        Enter(token);
        try
        {
            switch (token.Text)
            {
                case "for": return ParseFor();
                case "if": return ParseIf();
                case "set": return ParseSet();
                case "macro": return ParseMacro();
                case "call": return ParseCallBlock();
                case "filter": return ParseFilterBlock();
                case "with": return ParseWith();
                case "print": return ParsePrint();
                case "generation": return ParseGeneration();
                case "break":
                case "continue":
                    Next();
                    if (!openBlocks.TakeWhile(b => b.Tag is not ("macro" or "call")).Any(b => b.Tag == "for"))
                        throw Fail($"'{token.Text}' outside of a for loop", token);
                    return token.Text == "break" ? new BreakStmt(token.Line, token.Column) : new ContinueStmt(token.Line, token.Column);
            }
            if (UnsupportedTags.Contains(token.Text))
                throw Fail($"the '{token.Text}' tag is not supported in chat templates", token);
            string message = $"Encountered unknown tag '{token.Text}'.";
            if (openBlocks.Count > 0)
            {
                var (tag, endTags) = openBlocks.Peek();
                message += $" Jinja was looking for the following tags: {string.Join(" or ", endTags.Select(t => $"'{t}'"))}. " +
                    $"The innermost block that needs to be closed is '{tag}'.";
            }
            throw Fail(message, token);
        }
        finally
        {
            depth--;
        }
    }

    private T Hard<T>(Func<T> parse)
    {
        bool saved = soft;
        soft = false;
        try
        {
            return parse();
        }
        finally
        {
            soft = saved;
        }
    }

    private Stmt ParseFor()
    {
        var start = Next();
        var target = ParseAssignTarget(extraEnd: "in");
        Expect(TokenKind.Name, "in");
        var iterable = ParseTuple(withCondition: false, extraEnd: "recursive");
        return Hard(() =>
        {
            Expr? condition = SkipName("if") ? ParseExpression() : null;
            if (Current.IsName("recursive"))
                throw Fail("recursive for loops are not supported", Current);
            var body = ParseBlockBody("for", "endfor", "else");
            Stmt[] otherwise = [];
            if (Next().Text == "else")
            {
                otherwise = ParseBlockBody("for", "endfor");
                Next();
            }
            return new ForStmt(target, iterable, condition, body, otherwise, start.Line, start.Column);
        });
    }

    private Stmt ParseIf()
    {
        var start = Next();
        bool saved = soft;
        soft = true;
        try
        {
            var branches = new List<(Expr, Stmt[])>();
            Stmt[] otherwise = [];
            while (true)
            {
                var test = ParseTuple(withCondition: false);
                var body = ParseBlockBody("if", "elif", "else", "endif");
                branches.Add((test, body));
                var end = Next();
                if (end.Text == "elif")
                    continue;
                if (end.Text == "else")
                {
                    otherwise = ParseBlockBody("if", "endif");
                    Next();
                }
                break;
            }
            return new IfStmt([.. branches], otherwise, start.Line, start.Column);
        }
        finally
        {
            soft = saved;
        }
    }

    private Stmt ParseSet()
    {
        var start = Next();
        var target = ParseAssignTarget(withNamespace: true);
        if (SkipOp("="))
            return new SetStmt(target, ParseTuple(withCondition: true), start.Line, start.Column);
        return Hard(() =>
        {
            FilterExpr? filter = Current.IsOp("|") ? ParseFilterChain(null, startInline: false) : null;
            var body = ParseBlockBody("set", "endset");
            Next();
            return new SetBlockStmt(target, filter, body, start.Line, start.Column);
        });
    }

    private Stmt ParseMacro()
    {
        var start = Next();
        string macroName = Expect(TokenKind.Name).Text;
        return Hard(() =>
        {
            var (parameters, defaults) = ParseSignature();
            var body = ParseBlockBody("macro", "endmacro");
            Next();
            return new MacroStmt(MakeMacro(macroName, parameters, defaults, body, start), start.Line, start.Column);
        });
    }

    private static MacroDefinition MakeMacro(string name, string[] parameters, Expr[] defaults, Stmt[] body, Token at)
    {
        var used = new HashSet<string>();
        NameCollector.Collect(body, used);
        foreach (var d in defaults)
            NameCollector.Collect(d, used);
        return new MacroDefinition(name, parameters, defaults, body, at.Line, at.Column)
        {
            UsesVarargs = used.Contains("varargs") && !parameters.Contains("varargs"),
            UsesKwargs = used.Contains("kwargs") && !parameters.Contains("kwargs"),
            UsesCaller = used.Contains("caller") && !parameters.Contains("caller"),
        };
    }

    private (string[] Parameters, Expr[] Defaults) ParseSignature()
    {
        var parameters = new List<string>();
        var defaults = new List<Expr>();
        Expect(TokenKind.Operator, "(");
        while (!Current.IsOp(")"))
        {
            if (parameters.Count > 0)
                Expect(TokenKind.Operator, ",");
            var parameter = Expect(TokenKind.Name);
            if (SkipOp("="))
                defaults.Add(ParseExpression());
            else if (defaults.Count > 0)
                throw Fail("non-default argument follows default argument", parameter);
            parameters.Add(parameter.Text);
        }
        Expect(TokenKind.Operator, ")");
        return ([.. parameters], [.. defaults]);
    }

    private Stmt ParseCallBlock()
    {
        var start = Next();
        (string[] parameters, Expr[] defaults) = Current.IsOp("(") ? Hard(ParseSignature) : ([], []);
        var call = ParseExpression();
        if (call is not CallExpr callExpr)
            throw Fail("expected call", start);
        return Hard(() =>
        {
            var body = ParseBlockBody("call", "endcall");
            Next();
            return new CallBlockStmt(MakeMacro("caller", parameters, defaults, body, start), callExpr, start.Line, start.Column);
        });
    }

    private Stmt ParseFilterBlock()
    {
        var start = Next();
        return Hard(() =>
        {
            var filter = ParseFilterChain(null, startInline: true)!;
            var body = ParseBlockBody("filter", "endfilter");
            Next();
            return new FilterBlockStmt(filter, body, start.Line, start.Column);
        });
    }

    private Stmt ParseWith()
    {
        var start = Next();
        return Hard(() =>
        {
            var assignments = new List<(Expr, Expr)>();
            while (Current.Kind != TokenKind.BlockEnd)
            {
                if (assignments.Count > 0)
                    Expect(TokenKind.Operator, ",");
                var target = ParseAssignTarget();
                Expect(TokenKind.Operator, "=");
                assignments.Add((target, ParseExpression()));
            }
            var body = ParseBlockBody("with", "endwith");
            Next();
            return new WithStmt([.. assignments], body, start.Line, start.Column);
        });
    }

    private Stmt ParsePrint()
    {
        var start = Next();
        var items = new List<object>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (items.Count > 0)
                Expect(TokenKind.Operator, ",");
            items.Add(ParseExpression());
        }
        return new OutputStmt([.. items], start.Line, start.Column);
    }

    private Stmt ParseGeneration()
    {
        var start = Next();
        return Hard(() =>
        {
            var body = ParseBlockBody("generation", "endgeneration");
            Next();
            return new ScopeStmt(body, start.Line, start.Column);
        });
    }

    private Expr ParseAssignTarget(string? extraEnd = null, bool withNamespace = false)
    {
        var start = Current;
        var items = new List<Expr>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0)
                Expect(TokenKind.Operator, ",");
            if (IsTupleEnd(extraEnd))
                break;
            var token = Expect(TokenKind.Name);
            if (withNamespace && Current.IsOp("."))
            {
                Next();
                var attribute = Expect(TokenKind.Name);
                items.Add(new NamespaceRefExpr(token.Text, attribute.Text, token.Line, token.Column));
            }
            else
            {
                if (token.Text is "true" or "false" or "True" or "False" or "none" or "None")
                    throw Fail("can't assign to 'const'", token);
                items.Add(new NameExpr(token.Text, token.Line, token.Column));
            }
            if (Current.IsOp(","))
                isTuple = true;
            else
                break;
        }
        if (items.Count == 0)
            throw Fail($"expected an assignment target, got '{Current.Describe()}'", Current);
        if (isTuple && items.Any(i => i is NamespaceRefExpr))
            throw Fail("can't assign to 'tuple'", start);
        return isTuple ? new TupleExpr([.. items], start.Line, start.Column) : items[0];
    }

    // ---------------------------------------------------------------- expressions

    private bool IsTupleEnd(string? extraEnd) =>
        Current.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd || Current.IsOp(")")
        || (extraEnd is not null && Current.IsName(extraEnd));

    private Expr ParseTuple(bool withCondition, string? extraEnd = null, bool explicitParentheses = false)
    {
        var start = Current;
        var items = new List<Expr>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0)
                Expect(TokenKind.Operator, ",");
            if (IsTupleEnd(extraEnd))
                break;
            items.Add(withCondition ? ParseExpression() : ParseOr());
            if (Current.IsOp(","))
                isTuple = true;
            else
                break;
        }
        if (!isTuple)
        {
            if (items.Count > 0)
                return items[0];
            if (!explicitParentheses)
                throw Fail($"Expected an expression, got '{Current.Describe()}'", Current);
        }
        return new TupleExpr([.. items], start.Line, start.Column);
    }

    private Expr ParseExpression()
    {
        var start = Current;
        Enter(start);
        try
        {
            var expr = ParseOr();
            while (Current.IsName("if"))
            {
                var at = Next();
                bool saved = soft;
                soft = true;
                try
                {
                    var test = ParseOr();
                    Expr? otherwise = SkipName("else") ? ParseExpression() : null;
                    expr = new ConditionalExpr(test, expr, otherwise, at.Line, at.Column);
                }
                finally
                {
                    soft = saved;
                }
            }
            return expr;
        }
        finally
        {
            depth--;
        }
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var at = Next();
            left = new BinaryExpr(BinaryOp.Or, left, ParseAnd(), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var at = Next();
            left = new BinaryExpr(BinaryOp.And, left, ParseNot(), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            var at = Next();
            Enter(at);
            try
            {
                return new UnaryExpr(UnaryOp.Not, ParseNot(), at.Line, at.Column);
            }
            finally
            {
                depth--;
            }
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var start = Current;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var token = Current;
            if (token.Kind == TokenKind.Operator && token.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                Next();
                rest.Add((token.Text, ParseMath1()));
            }
            else if (token.IsName("in"))
            {
                Next();
                rest.Add(("in", ParseMath1()));
            }
            else if (token.IsName("not") && Peek().IsName("in"))
            {
                Next();
                Next();
                rest.Add(("not in", ParseMath1()));
            }
            else
                break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, [.. rest], start.Line, start.Column);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Current.Kind == TokenKind.Operator && Current.Text is "+" or "-")
        {
            var at = Next();
            left = new BinaryExpr(at.Text == "+" ? BinaryOp.Add : BinaryOp.Subtract, left, ParseConcat(), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var start = Current;
        var parts = new List<Expr> { ParseMath2() };
        while (SkipOp("~"))
            parts.Add(ParseMath2());
        return parts.Count == 1 ? parts[0] : new ConcatExpr([.. parts], start.Line, start.Column);
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            var at = Next();
            var op = at.Text switch
            {
                "*" => BinaryOp.Multiply,
                "/" => BinaryOp.Divide,
                "//" => BinaryOp.FloorDivide,
                _ => BinaryOp.Modulo,
            };
            left = new BinaryExpr(op, left, ParsePow(), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilter: true);
        while (Current.IsOp("**"))
        {
            var at = Next();
            left = new BinaryExpr(BinaryOp.Power, left, ParseUnary(withFilter: true), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        var token = Current;
        Expr node;
        if (token.IsOp("-") || token.IsOp("+"))
        {
            Next();
            Enter(token);
            try
            {
                node = new UnaryExpr(token.Text == "-" ? UnaryOp.Negate : UnaryOp.Plus, ParseUnary(withFilter: false), token.Line, token.Column);
            }
            finally
            {
                depth--;
            }
        }
        else
            node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter)
            node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                Next();
                return token.Text switch
                {
                    "true" or "True" => new ConstExpr(true, token.Line, token.Column),
                    "false" or "False" => new ConstExpr(false, token.Line, token.Column),
                    "none" or "None" => new ConstExpr(null, token.Line, token.Column),
                    _ => new NameExpr(token.Text, token.Line, token.Column),
                };
            case TokenKind.String:
                Next();
                string text = (string)token.Value!;
                while (Current.Kind == TokenKind.String)
                    text += (string)Next().Value!;
                return new ConstExpr(text, token.Line, token.Column);
            case TokenKind.Integer:
            case TokenKind.Float:
                Next();
                return new ConstExpr(token.Value, token.Line, token.Column);
            case TokenKind.Operator when token.Text == "(":
                Next();
                Enter(token);
                try
                {
                    var inner = ParseTuple(withCondition: true, explicitParentheses: true);
                    Expect(TokenKind.Operator, ")");
                    return inner;
                }
                finally
                {
                    depth--;
                }
            case TokenKind.Operator when token.Text == "[":
                return ParseList();
            case TokenKind.Operator when token.Text == "{":
                return ParseDict();
            case TokenKind.Eof:
                throw Fail("unexpected end of template", token);
            default:
                throw Fail($"unexpected '{token.Describe()}'", token);
        }
    }

    private Expr ParseList()
    {
        var start = Next();
        Enter(start);
        try
        {
            var items = new List<Expr>();
            while (!Current.IsOp("]"))
            {
                if (items.Count > 0)
                    Expect(TokenKind.Operator, ",");
                if (Current.IsOp("]"))
                    break;
                items.Add(ParseExpression());
            }
            Expect(TokenKind.Operator, "]");
            return new ListExpr([.. items], start.Line, start.Column);
        }
        finally
        {
            depth--;
        }
    }

    private Expr ParseDict()
    {
        var start = Next();
        Enter(start);
        try
        {
            var pairs = new List<(Expr, Expr)>();
            while (!Current.IsOp("}"))
            {
                if (pairs.Count > 0)
                    Expect(TokenKind.Operator, ",");
                if (Current.IsOp("}"))
                    break;
                var key = ParseExpression();
                Expect(TokenKind.Operator, ":");
                pairs.Add((key, ParseExpression()));
            }
            Expect(TokenKind.Operator, "}");
            return new DictExpr([.. pairs], start.Line, start.Column);
        }
        finally
        {
            depth--;
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOp(".") || token.IsOp("["))
                node = ParseSubscript(node);
            else if (token.IsOp("("))
                node = new CallExpr(node, ParseCallArgs(), token.Line, token.Column);
            else
                return node;
        }
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOp("|"))
                node = ParseFilterChain(node, startInline: false)!;
            else if (token.IsName("is"))
                node = ParseTest(node);
            else if (token.IsOp("("))
                node = new CallExpr(node, ParseCallArgs(), token.Line, token.Column);
            else
                return node;
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        var token = Next();
        if (token.IsOp("."))
        {
            var attribute = Next();
            if (attribute.Kind == TokenKind.Name)
                return new GetAttrExpr(node, attribute.Text, token.Line, token.Column);
            if (attribute.Kind != TokenKind.Integer)
                throw Fail("expected name or number", attribute);
            return new GetItemExpr(node, new ConstExpr(attribute.Value, attribute.Line, attribute.Column), token.Line, token.Column);
        }
        Enter(token);
        try
        {
            var args = new List<Expr>();
            while (!Current.IsOp("]"))
            {
                if (args.Count > 0)
                    Expect(TokenKind.Operator, ",");
                args.Add(ParseSubscribed());
            }
            Expect(TokenKind.Operator, "]");
            if (args.Count == 0)
                throw Fail("expected subscript expression", token);
            var key = args.Count == 1 ? args[0] : new TupleExpr([.. args], token.Line, token.Column);
            return new GetItemExpr(node, key, token.Line, token.Column);
        }
        finally
        {
            depth--;
        }
    }

    private Expr ParseSubscribed()
    {
        var start = Current;
        Expr? first = null;
        if (Current.IsOp(":"))
            Next();
        else
        {
            first = ParseExpression();
            if (!Current.IsOp(":"))
                return first;
            Next();
        }
        Expr? stop = null, step = null;
        if (!Current.IsOp(":") && !Current.IsOp("]") && !Current.IsOp(","))
            stop = ParseExpression();
        if (SkipOp(":") && !Current.IsOp("]") && !Current.IsOp(","))
            step = ParseExpression();
        return new SliceExpr(first, stop, step, start.Line, start.Column);
    }

    private ArgList ParseCallArgs()
    {
        var open = Expect(TokenKind.Operator, "(");
        Enter(open);
        try
        {
            var positional = new List<Expr>();
            var named = new List<(string, Expr)>();
            Expr? starArgs = null, starKwargs = null;
            bool requireComma = false;
            while (!Current.IsOp(")"))
            {
                if (requireComma)
                {
                    Expect(TokenKind.Operator, ",");
                    if (Current.IsOp(")"))
                        break;
                }
                if (Current.IsOp("*"))
                {
                    if (starArgs is not null || starKwargs is not null)
                        throw Fail("invalid syntax for function call expression", open);
                    Next();
                    starArgs = ParseExpression();
                }
                else if (Current.IsOp("**"))
                {
                    if (starKwargs is not null)
                        throw Fail("invalid syntax for function call expression", open);
                    Next();
                    starKwargs = ParseExpression();
                }
                else if (Current.Kind == TokenKind.Name && Peek().IsOp("="))
                {
                    if (starKwargs is not null)
                        throw Fail("invalid syntax for function call expression", open);
                    string key = Next().Text;
                    Next();
                    named.Add((key, ParseExpression()));
                }
                else
                {
                    if (starArgs is not null || starKwargs is not null || named.Count > 0)
                        throw Fail("invalid syntax for function call expression", open);
                    positional.Add(ParseExpression());
                }
                requireComma = true;
            }
            Expect(TokenKind.Operator, ")");
            return new ArgList([.. positional], [.. named], starArgs, starKwargs);
        }
        finally
        {
            depth--;
        }
    }

    private FilterExpr? ParseFilterChain(Expr? node, bool startInline)
    {
        FilterExpr? result = null;
        while (Current.IsOp("|") || startInline)
        {
            if (!startInline)
                Next();
            startInline = false;
            var token = Expect(TokenKind.Name);
            string filterName = token.Text;
            while (Current.IsOp("."))
            {
                Next();
                filterName += "." + Expect(TokenKind.Name).Text;
            }
            var args = Current.IsOp("(") ? ParseCallArgs() : ArgList.Empty;
            Filters.Table.TryGetValue(filterName, out var filter);
            if (filter is null && !soft)
                throw Fail($"No filter named '{filterName}'.", token);
            result = new FilterExpr(node, filterName, args, filter, token.Line, token.Column);
            node = result;
        }
        return result;
    }

    private Expr ParseTest(Expr node)
    {
        var token = Next();
        bool negated = SkipName("not");
        var nameToken = Expect(TokenKind.Name);
        string testName = nameToken.Text;
        while (Current.IsOp("."))
        {
            Next();
            testName += "." + Expect(TokenKind.Name).Text;
        }
        ArgList args;
        var current = Current;
        if (current.IsOp("("))
            args = ParseCallArgs();
        else if ((current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                  || current.IsOp("[") || current.IsOp("{"))
                 && !current.IsName("else") && !current.IsName("or") && !current.IsName("and"))
        {
            if (current.IsName("is"))
                throw Fail("You cannot chain multiple tests with is", current);
            args = new ArgList([ParsePostfix(ParsePrimary())], [], null, null);
        }
        else
            args = ArgList.Empty;
        Tests.Table.TryGetValue(testName, out var test);
        if (test is null && !soft)
            throw Fail($"No test named '{testName}'.", nameToken);
        Expr result = new TestExpr(node, testName, args, test, token.Line, token.Column);
        return negated ? new UnaryExpr(UnaryOp.Not, result, token.Line, token.Column) : result;
    }
}

/// <summary>Collects the names an AST loads (used to find macros that reference varargs/kwargs/caller).</summary>
internal static class NameCollector
{
    public static void Collect(IEnumerable<Stmt> body, HashSet<string> names)
    {
        foreach (var stmt in body)
            Collect(stmt, names);
    }

    public static void Collect(Node? node, HashSet<string> names)
    {
        switch (node)
        {
            case null:
                return;
            case NameExpr n:
                names.Add(n.Name);
                return;
            case OutputStmt o:
                foreach (var item in o.Items)
                {
                    if (item is Node n2)
                        Collect(n2, names);
                }
                return;
            case ForStmt f:
                Collect(f.Iterable, names);
                Collect(f.Condition, names);
                Collect(f.Body, names);
                Collect(f.Otherwise, names);
                return;
            case IfStmt i:
                foreach (var (test, body) in i.Branches)
                {
                    Collect(test, names);
                    Collect(body, names);
                }
                Collect(i.Otherwise, names);
                return;
            case SetStmt s:
                Collect(s.Value, names);
                return;
            case SetBlockStmt sb:
                Collect(sb.Filter, names);
                Collect(sb.Body, names);
                return;
            case MacroStmt:
                return;
            case CallBlockStmt cb:
                Collect(cb.Call, names);
                return;
            case FilterBlockStmt fb:
                Collect(fb.Filter, names);
                Collect(fb.Body, names);
                return;
            case WithStmt w:
                foreach (var (_, value) in w.Assignments)
                    Collect(value, names);
                Collect(w.Body, names);
                return;
            case ScopeStmt sc:
                Collect(sc.Body, names);
                return;
            case ListExpr l:
                foreach (var e in l.Items)
                    Collect(e, names);
                return;
            case TupleExpr t:
                foreach (var e in t.Items)
                    Collect(e, names);
                return;
            case DictExpr d:
                foreach (var (k, v) in d.Pairs)
                {
                    Collect(k, names);
                    Collect(v, names);
                }
                return;
            case GetAttrExpr ga:
                Collect(ga.Target, names);
                return;
            case GetItemExpr gi:
                Collect(gi.Target, names);
                Collect(gi.Key, names);
                return;
            case SliceExpr sl:
                Collect(sl.Start, names);
                Collect(sl.Stop, names);
                Collect(sl.Step, names);
                return;
            case CallExpr c:
                Collect(c.Target, names);
                CollectArgs(c.Args, names);
                return;
            case FilterExpr fe:
                Collect(fe.Target, names);
                CollectArgs(fe.Args, names);
                return;
            case TestExpr te:
                Collect(te.Target, names);
                CollectArgs(te.Args, names);
                return;
            case UnaryExpr u:
                Collect(u.Operand, names);
                return;
            case BinaryExpr b:
                Collect(b.Left, names);
                Collect(b.Right, names);
                return;
            case ConcatExpr ce:
                foreach (var e in ce.Parts)
                    Collect(e, names);
                return;
            case CompareExpr cmp:
                Collect(cmp.First, names);
                foreach (var (_, e) in cmp.Rest)
                    Collect(e, names);
                return;
            case ConditionalExpr ct:
                Collect(ct.Test, names);
                Collect(ct.Then, names);
                Collect(ct.Otherwise, names);
                return;
        }
    }

    private static void CollectArgs(ArgList args, HashSet<string> names)
    {
        foreach (var e in args.Positional)
            Collect(e, names);
        foreach (var (_, e) in args.Named)
            Collect(e, names);
        Collect(args.StarArgs, names);
        Collect(args.StarKwargs, names);
    }
}
