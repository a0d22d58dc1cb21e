using System.Text;
using System.Text.Json;

namespace Pipeline.Tokenizer.Bench;

/// <summary>
/// A deterministic mixed corpus built from the repository, so every machine measures the same text:
/// about 55% prose (sentences drawn Zipf-like from the vocabulary's whole words, per script:
/// English-heavy, plus Latin-script European languages, Cyrillic, Greek, Arabic, Hebrew, Devanagari,
/// Thai, CJK, Hangul), 25% source code (the repo's .cs files, lines reshuffled), 10% rendered chat
/// prompts (chat.jsonl), 10% the conformance texts (encode.jsonl: emoji, controls, whitespace
/// runs, special-token strings). Returned as documents of 0.5-8 KB, as requests arrive.
/// </summary>
internal static class Corpus
{
    public static List<string> Build(string repoRoot, Tokenizer tokenizer, int targetBytes, int seed)
    {
        var random = new Random(seed);
        var prose = new ProseGenerator(tokenizer, random);
        string[] code = [.. Directory.EnumerateFiles(Path.Combine(repoRoot, "src"), "*.cs", SearchOption.AllDirectories)
            .Concat(Directory.EnumerateFiles(Path.Combine(repoRoot, "tests"), "*.cs", SearchOption.AllDirectories))
            .Where(p => !p.Contains("/obj/") && !p.Contains("/bin/"))
            .Order(StringComparer.Ordinal)
            .SelectMany(File.ReadLines)];
        string dev = Path.Combine(repoRoot, "tests", "fixtures", "tokenizer", "dev");
        string[] chats = [.. ReadField(Path.Combine(dev, "chat.jsonl"), "rendered")];
        string[] texts = [.. ReadField(Path.Combine(dev, "encode.jsonl"), "text")];

        var documents = new List<string>();
        long bytes = 0;
        var document = new StringBuilder();
        while (bytes < targetBytes)
        {
            int size = random.Next(512, 8192);
            document.Clear();
            int kind = random.Next(100);
            while (document.Length < size)
            {
                if (kind < 55)
                    document.Append(prose.Paragraph()).Append("\n\n");
                else if (kind < 80)
                    document.Append(code[random.Next(code.Length)]).Append('\n');
                else if (kind < 90)
                    document.Append(chats[random.Next(chats.Length)]);
                else
                    document.Append(texts[random.Next(texts.Length)]).Append(' ');
            }
            string text = document.ToString();
            documents.Add(text);
            bytes += Encoding.UTF8.GetByteCount(text);
        }
        return documents;
    }

    private static IEnumerable<string> ReadField(string path, string field) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select(l =>
        {
            using var doc = JsonDocument.Parse(l);
            return doc.RootElement.GetProperty(field).GetString()!;
        });

    /// <summary>Sentences of whole-word vocabulary entries ("▁word"), low ids (frequent words) favoured.</summary>
    private sealed class ProseGenerator
    {
        private readonly Random _random;
        private readonly List<(string[] Words, bool Spaced, int Weight)> _scripts = [];
        private readonly int _totalWeight;

        public ProseGenerator(Tokenizer tokenizer, Random random)
        {
            _random = random;
            (Func<char, bool> Is, bool Spaced, int Weight)[] scripts =
            [
                (c => c is >= 'a' and <= 'z', true, 50),
                (c => char.IsLetter(c) && c < 0x250, true, 12),   // Latin incl. accents
                (c => c is >= '\u0400' and <= '\u04FF', true, 6),
                (c => c is >= '\u0370' and <= '\u03FF', true, 2),
                (c => c is >= '\u0600' and <= '\u06FF', true, 3),
                (c => c is >= '\u0590' and <= '\u05FF', true, 1),
                (c => c is >= '\u0900' and <= '\u097F', true, 3),
                (c => c is >= '\u0E00' and <= '\u0E7F', false, 2),
                (c => c is >= '\u4E00' and <= '\u9FFF', false, 12),
                (c => c is >= '\uAC00' and <= '\uD7A3', true, 4),
                (c => c is >= '\u3040' and <= '\u30FF', false, 5),
            ];
            var words = scripts.Select(_ => new List<string>()).ToArray();
            for (int id = 0; id < tokenizer.VocabSize; id++)
            {
                string token = tokenizer.IdToToken(id);
                if (token.Length < 2)
                    continue;
                string word = token[0] == '▁' ? token[1..] : token;
                for (int s = 0; s < scripts.Length; s++)
                {
                    if (word.Length > 0 && word.All(scripts[s].Is) && (!scripts[s].Spaced || token[0] == '▁'))
                    {
                        words[s].Add(word);
                        break;
                    }
                }
            }
            for (int s = 0; s < scripts.Length; s++)
                _scripts.Add(([.. words[s]], scripts[s].Spaced, scripts[s].Weight));
            _totalWeight = scripts.Sum(s => s.Weight);
        }

        public string Paragraph()
        {
            int pick = _random.Next(_totalWeight);
            var script = _scripts[0];
            foreach (var s in _scripts)
            {
                if ((pick -= s.Weight) < 0)
                {
                    script = s;
                    break;
                }
            }
            var text = new StringBuilder();
            int sentences = _random.Next(2, 7);
            for (int i = 0; i < sentences; i++)
            {
                int length = _random.Next(4, 22);
                for (int w = 0; w < length; w++)
                {
                    // Zipf-like: index = n^u^2 favours the vocabulary's frequent (low-id) words.
                    double u = _random.NextDouble();
                    int index = (int)Math.Pow(script.Words.Length, u * u) - 1;
                    string word = script.Words[Math.Clamp(index, 0, script.Words.Length - 1)];
                    if (w == 0 && script.Spaced)
                        word = char.ToUpperInvariant(word[0]) + word[1..];
                    text.Append(word);
                    if (_random.Next(12) == 0)
                        text.Append(_random.Next(3) == 0 ? ";" : ",");
                    if (script.Spaced || _random.Next(4) == 0)
                        text.Append(' ');
                }
                text.Append(script.Spaced ? ". " : "。");
            }
            return text.ToString();
        }
    }
}
