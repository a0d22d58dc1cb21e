// Summarizes the JSON lines of scripts/bench-vs-llamacpp.sh and scripts/bench-actors.sh into ratio tables.
// usage: node scripts/bench-report.mjs vs-llamacpp|actors RESULTS.jsonl
import fs from "node:fs";

const [mode, file] = process.argv.slice(2);
if (!["vs-llamacpp", "actors"].includes(mode) || !file) {
  console.error("usage: node scripts/bench-report.mjs vs-llamacpp|actors RESULTS.jsonl");
  process.exit(2);
}
const rows = fs.readFileSync(file, "utf8").split("\n").filter(l => l.trim()).map(l => JSON.parse(l));
const median = v => { const s = [...v].sort((a, b) => a - b); return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : NaN; };
const f = (x, d = 2) => Number.isFinite(x) ? x.toFixed(d) : "-";
const table = (header, lines) => {
  console.log("| " + header.join(" | ") + " |");
  console.log("|" + header.map(() => "---").join("|") + "|");
  for (const l of lines) console.log("| " + l.join(" | ") + " |");
};
// Each run's own median over its repeats; across interleaved rounds, the median of those.
const med = (runs, key) => median(runs.map(r => r[key]?.median).filter(Number.isFinite));
const maxOther = runs => Math.max(...runs.map(r => r.otherProcessCores ?? 0));
const GiB = b => b / 2 ** 30;

if (mode === "vs-llamacpp") {
  const bw = Object.fromEntries(rows.filter(r => r.engine === "bandwidth.sh").map(r => [r.threads, r.readGBs]));
  const keys = [...new Set(rows.filter(r => r.layersTag).map(r => `${r.layersTag}/${r.threads}`))];
  const lines = keys.map(k => {
    const [layers, threads] = k.split("/");
    const of = engine => rows.filter(r => r.engine === engine && r.layersTag === layers && String(r.threads) === threads);
    const l = of("llama.cpp"), p = of("pipeline");
    const lp = med(l, "prefillTokS"), pp = med(p, "prefillTokS"), ld = med(l, "decodeTokS"), pd = med(p, "decodeTokS");
    const read = bw[threads];
    const lgb = med(l, "decodeGBs"), pgb = med(p, "decodeGBs");
    const probe = p.map(r => r.readGBs).find(Number.isFinite);
    return [layers, threads, `${l.length}+${p.length}`, f(lp), f(pp), f(pp / lp) + "x", f(ld, 3), f(pd, 3), f(pd / ld) + "x",
      f(read, 1), `${f(lgb)} (${f(100 * lgb / read, 0)}%)`, `${f(pgb)} (${f(100 * pgb / read, 0)}%)`, f(probe, 1),
      `${f(GiB(median(l.map(r => r.rssBytes))))} / ${f(GiB(median(p.map(r => r.rssBytes))))}`, f(Math.max(maxOther(l), maxOther(p)))];
  });
  table(["layers", "threads", "runs (llama+pipe)", "llama.cpp prefill tok/s", "Pipeline prefill tok/s", "prefill ratio",
    "llama.cpp decode tok/s", "Pipeline decode tok/s", "decode ratio", "read GB/s (bandwidth.sh)", "llama.cpp decode GB/s (% BW)",
    "Pipeline decode GB/s (% BW)", "Pipeline probe GB/s", "RSS GiB llama/pipe", "max otherProcessCores"], lines);
} else {
  // scripts/bench-actors.sh: one `pipeline bench --mode interleaved` line per invocation.
  const pct = x => f(100 * x, 1) + "%";
  const lines = rows.filter(r => r.mode === "interleaved").map(r => [r.label ?? r.backend, r.repeats, r.decodeTokens, r.sessions,
    f(r.engineDecodeTokS.median, 3), f(r.actorsDecodeTokS.median, 3), f(r.manyDecodeTokS?.median, 3),
    `${pct(r.overhead.median)} (${pct(r.overhead.min)} to ${pct(r.overhead.max)})`,
    r.scaling ? `${f(r.scaling.median)}x (${f(r.scaling.min)} to ${f(r.scaling.max)})` : "-",
    r.steadyScaling ? `${f(r.steadyScaling.median)}x (${f(r.steadyScaling.min)} to ${f(r.steadyScaling.max)})` : "-",
    `${f(r.engineStepMs.median, 1)} / ${f(r.actorsDecodePassMs.median, 1)}`, f(r.otherProcessCores)]);
  table(["run", "rounds", "D", "N", "engine tok/s", "actors x1 tok/s", "actors xN tok/s (aggregate)",
    "overhead, median of rounds (range)", "xN / x1, median of rounds (range)", "xN / x1 while all N decode together", "engine step / actors pass ms", "otherProcessCores"], lines);
}
