// `lro-native trace`, `eval` and `run`: latent reasoning over a dataset (JSONL traces, resumable),
// GSM8K accuracy with and without latents, and one question shown step by step in the terminal.
import { Command, InvalidArgumentError, Option } from 'commander';
import { EDIT_POINT } from '../../lib/core/hook-points.js';
import { basename } from 'node:path';
import { countShardRecords, shardOf, shardOptions, type ShardCliOptions, choiceListArg, floatArg, intArg, interruptSignal, isAbort, layersArg, openModelOrDemo, pointsArg, positionsArg, type PositionSelector, progressCounts, progressLine, requireFile, threadsArg } from '../cli-util.js';
import { expandCapturePoints, type CaptureRecord } from '../../lib/capture/capture.js';
import { evaluate, type EvaluateProgress, type EvaluateSummary } from '../../lib/capture/evaluate.js';
import { InputError } from '../../lib/core/errors.js';
import { fileSource, textSource, type SourceIdentity } from '../../lib/core/content-hash.js';
import { countJsonlRecords, readPromptJsonl } from '../../lib/capture/jsonl.js';
import { invertLatent } from '../../lib/capture/invert.js';
import { patchSweep } from '../../lib/reasoning/patch-sweep.js';
import { reason, requireLatentHead } from '../../lib/reasoning/reason.js';
import type { AblationKind, Intervention } from '../../lib/reasoning/reasoner.js';
import { shardPath, type Shard } from '../../lib/core/shard.js';
import { trace, traceLine, type TraceLine, type TraceProgress } from '../../lib/capture/trace.js';

const ABLATIONS = ['zero', 'skip', 'noise'] as const;

function pct(n: number, d: number): string {
  return d ? `${((100 * n) / d).toFixed(1)}%` : 'n/a';
}

interface DataOptions extends ShardCliOptions {
  data?: string;
  prompt?: string;
  field?: string;
  limit?: number;
}

/** Records from --data (lazily, with a count for progress) or --prompt, and the shard of this run. */
async function recordsFrom(
  opts: DataOptions,
  command: string,
): Promise<{ records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>; total?: number; source: SourceIdentity; shard: Shard | null }> {
  if ((opts.data === undefined) === (opts.prompt === undefined)) throw new InputError(`${command}: give exactly one of --data or --prompt`);
  const shard = shardOf(opts);
  if (opts.prompt !== undefined) {
    if (shard) throw new InputError(`${command}: --shard splits a --data file; one --prompt is not sharded`);
    return { records: [{ id: 'prompt', text: opts.prompt }], total: 1, source: textSource('--prompt', opts.prompt), shard };
  }
  requireFile(opts.data!, 'data file');
  const fields = opts.field ? [opts.field] : undefined;
  return {
    records: readPromptJsonl(opts.data!, { fields, limit: opts.limit }),
    total: shard ? await countShardRecords(opts.data!, shard, fields, opts.limit) : await countJsonlRecords(opts.data!, opts.limit),
    source: await fileSource(opts.data!, opts.field ? `field ${opts.field}` : undefined),
    shard,
  };
}

// ------------------------------------------------------------------ trace

interface TraceCliOptions extends DataOptions {
  model?: string;
  latentHead?: string;
  out: string;
  overwrite?: boolean;
  latentSteps?: number;
  maxAnswerTokens: number;
  ablations: AblationKind[];
  noiseScale: number;
  earlyDecode?: boolean;
  reasoning: boolean; // false when --no-reasoning is given
  topK: number;
  seed: number;
  temperature: number;
  threads: number;
  capture?: string;
  points: string[];
  layers: 'all' | number[];
  positions?: PositionSelector[];
  dtype: 'f32' | 'f16' | 'bf16';
  shardMb: number;
  json?: boolean;
  quiet?: boolean;
}

function traceProgressText(withoutLatents: boolean): (p: TraceProgress) => string {
  return (p) => {
    const without = withoutLatents ? `, ${p.noReasoningCorrect}/${p.graded} without` : '';
    const acc = p.graded ? `; correct ${p.correct}/${p.graded} with latents${without}` : '';
    return `trace: ${progressCounts(p.written, p.skipped, p.total, p.elapsedMs, 'questions')}${acc}`;
  };
}

async function traceCommand(opts: TraceCliOptions): Promise<void> {
  const { records, total, source, shard } = await recordsFrom(opts, 'trace');
  opts = { ...opts, out: shardPath(opts.out, shard, 'file'), ...(opts.capture ? { capture: shardPath(opts.capture, shard, 'folder') } : {}) };
  if (shard && !opts.quiet) process.stderr.write(`trace: shard ${shard.index}/${shard.count} (${total} of the records) into ${opts.out}${opts.capture ? ` and ${opts.capture}` : ''}\n`);
  const opened = await openModelOrDemo(opts.model, opts.latentHead, opts.quiet ?? false);
  const model = opened.model;
  try {
    const head = requireLatentHead(model, opened.latentHead);
    const capture = opts.capture
      ? {
          out: opts.capture,
          points: expandCapturePoints(opts.points, opts.layers, model.info.nLayer, true),
          positions: opts.positions,
          dtype: opts.dtype,
          shardBytes: Math.max(1, Math.round(opts.shardMb * 1024 * 1024)),
        }
      : undefined;
    const progress = progressLine(!opts.quiet, traceProgressText(opts.reasoning === false));
    const signal = interruptSignal(() => process.stderr.write('\ntrace: interrupted; finished lines are kept (Ctrl-C again to quit now)\n'));
    let summary;
    try {
      summary = await trace(model, records, {
        out: opts.out,
        overwrite: opts.overwrite ?? false,
        source,
        latentHead: head,
        latentSteps: opts.latentSteps,
        maxAnswerTokens: opts.maxAnswerTokens,
        temperature: opts.temperature,
        seed: opts.seed,
        earlyDecode: opts.earlyDecode ?? false,
        ablations: opts.ablations,
        noiseScale: opts.noiseScale,
        noReasoning: opts.reasoning === false,
        lensTopK: opts.topK,
        threads: opts.threads,
        capture,
        total,
        ...(shard ? { shard } : {}),
        signal,
        onProgress: progress.update,
      });
    } catch (e) {
      progress.end();
      if (isAbort(e)) process.stderr.write(`trace: stopped; rerun the same command to continue after the last line of ${opts.out}\n`);
      throw e;
    }
    progress.end();
    if (opts.json) {
      process.stdout.write(JSON.stringify({ ...summary, demo: opened.demo }, null, 2) + '\n');
      return;
    }
    if (!opts.quiet) {
      const parts = [`trace: ${summary.written} questions traced into ${opts.out} in ${(summary.elapsedMs / 1000).toFixed(1)}s`];
      if (summary.skipped) parts.push(`${summary.skipped} already there`);
      if (summary.truncatedBytes) parts.push(`a cut-off last line (${summary.truncatedBytes} bytes) was dropped and redone`);
      if (summary.graded)
        parts.push(
          `correct ${summary.correct}/${summary.graded} (${pct(summary.correct, summary.graded)}) with latents` +
            (opts.reasoning === false ? `, ${summary.noReasoningCorrect}/${summary.graded} (${pct(summary.noReasoningCorrect, summary.graded)}) without` : ''),
        );
      if (summary.captureRecords !== null) parts.push(`${summary.captureRecords} records captured in ${opts.capture}`);
      process.stderr.write(parts.join('; ') + '\n');
    }
  } finally {
    model.dispose();
  }
}

// ------------------------------------------------------------------ eval

interface EvalCliOptions extends DataOptions {
  model?: string;
  out?: string;
  overwrite?: boolean;
  latentHead?: string;
  latentSteps?: number;
  maxAnswerTokens: number;
  threads: number;
  json?: boolean;
  quiet?: boolean;
}

function evalReport(s: EvaluateSummary, source: string, demo: boolean): string {
  const earlier = s.questions - s.questionsThisRun;
  const lines = [
    `eval: ${s.questions} questions from ${source}${s.interrupted ? ' (interrupted)' : ''}, ${s.graded} with a "#### X" answer` +
      (earlier > 0 ? ` (${earlier} from an earlier run)` : ''),
    `  model ${s.model}${demo ? ' (the built-in model organism)' : ''}`,
  ];
  if (s.graded) {
    const w = String(s.graded).length;
    const rows: [string, number][] = [
      [`with ${s.latentSteps} latent steps`, s.withLatents.correct],
      ['without latent steps', s.withoutLatents.correct],
    ];
    const lw = Math.max(...rows.map((r) => r[0].length)) + 2;
    for (const [label, c] of rows) lines.push(`  ${label.padEnd(lw)}${String(c).padStart(w)}/${s.graded} correct  ${pct(c, s.graded)}`);
  } else lines.push('  no question had a gold answer ("#### X" in its "answer" field): nothing to grade');
  lines.push(
    `  throughput ${s.questionsPerSecond.toFixed(2)} questions/s, ${s.answerTokensPerSecond.toFixed(1)} answer tokens/s (${s.questionsThisRun} questions in ${s.elapsedSeconds.toFixed(1)} s; each runs with and without latents)`,
  );
  return lines.join('\n') + '\n';
}

async function evalCommand(opts: EvalCliOptions): Promise<void> {
  const { records, total, source, shard } = await recordsFrom(opts, 'eval');
  if (shard && opts.out === undefined) throw new InputError('eval: a sharded eval needs --out (each shard keeps its results there; merge joins them and `eval --out MERGED` reports on all)');
  if (shard) opts = { ...opts, out: shardPath(opts.out!, shard, 'file') };
  if (shard && !opts.quiet) process.stderr.write(`eval: shard ${shard.index}/${shard.count} (${total} of the records) into ${opts.out}\n`);
  const opened = await openModelOrDemo(opts.model, opts.latentHead, opts.quiet ?? false);
  const model = opened.model;
  try {
    const head = requireLatentHead(model, opened.latentHead);
    const progress = progressLine(!opts.quiet, (p: EvaluateProgress) => {
      const acc = p.graded ? `; correct ${p.correct}/${p.graded} with latents, ${p.noReasoningCorrect}/${p.graded} without` : '';
      return `eval: ${progressCounts(p.done, p.skipped, p.total, p.elapsedMs, 'questions')}${acc}`;
    });
    const signal = interruptSignal(() => process.stderr.write('\neval: interrupted; summary of the questions done so far follows\n'));
    let s: EvaluateSummary;
    try {
      s = await evaluate(model, records, {
        latentHead: head,
        latentSteps: opts.latentSteps,
        maxAnswerTokens: opts.maxAnswerTokens,
        threads: opts.threads,
        out: opts.out,
        source,
        overwrite: opts.overwrite ?? false,
        total,
        ...(shard ? { shard } : {}),
        signal,
        onProgress: progress.update,
      });
    } finally {
      progress.end();
    }
    if (s.interrupted && opts.out) process.stderr.write(`eval: rerun the same command to continue ${opts.out}\n`);
    if (opts.json) process.stdout.write(JSON.stringify({ ...s, data: opts.data ?? null, demo: opened.demo }, null, 2) + '\n');
    else process.stdout.write(evalReport(s, opts.data ? basename(opts.data) : '--prompt', opened.demo));
    if (s.interrupted) process.exitCode = 130;
  } finally {
    model.dispose();
  }
}

// ------------------------------------------------------------------ run

/**
 * --intervene: comma-separated `zero:K`, `skip:K`, `noise:K[:SCALE[:SEED]]`, `swap:I:J`; `zero` and
 * `noise` also take `@POINT` (e.g. `zero:2@resid_post.1`) to act at that hook point of latent
 * position K instead of on the fed embedding. (mean, patch and steer need vectors: library only.)
 */
function interventionsArg(value: string): Intervention[] {
  const bad = (spec: string, why: string) =>
    new InvalidArgumentError(`"${spec}": ${why} (expected zero:K, skip:K, noise:K[:SCALE[:SEED]] or swap:I:J, with @POINT for zero/noise)`);
  return value
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map((spec): Intervention => {
      const [body, at] = spec.split('@');
      const parts = body.split(':');
      const nums = parts.slice(1).map(Number);
      if (nums.some((n) => !Number.isFinite(n) || n < 0)) throw bad(spec, 'numbers must be non-negative');
      const step = nums[0];
      if (!Number.isInteger(step)) throw bad(spec, 'needs a step number');
      if (at !== undefined && !EDIT_POINT.test(at)) throw bad(spec, `unknown hook point "${at}"`);
      switch (parts[0]) {
        case 'zero':
          return { kind: 'zero', step, at };
        case 'skip':
          if (at) throw bad(spec, 'skip acts on the fed embedding only');
          return { kind: 'skip', step };
        case 'noise':
          return { kind: 'noise', step, scale: nums[1] ?? 1, seed: nums[2], at };
        case 'swap':
          if (!Number.isInteger(nums[1])) throw bad(spec, 'swap needs two steps');
          return { kind: 'swap', step, with: nums[1] };
        default:
          throw bad(spec, `unknown intervention "${parts[0]}"`);
      }
    });
}

interface RunCliOptions {
  intervene: Intervention[];
  model?: string;
  latentHead?: string;
  latentSteps?: number;
  maxAnswerTokens: number;
  topK: number;
  ablations: AblationKind[];
  earlyDecode: boolean;
  seed: number;
  threads: number;
  json?: boolean;
  quiet?: boolean;
}

const SHADES = ['·', '░', '▒', '▓', '█'];
const BARS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

// Display only: a probability picks one of five shades, and 1 - cosine one of eight bar heights.
const shade = (p: number) => SHADES[Math.max(0, Math.min(SHADES.length - 1, Math.floor(p * SHADES.length)))];
const bar = (drift: number) => BARS[Math.max(0, Math.min(BARS.length - 1, Math.floor(drift * BARS.length)))];
const num = (x: number, digits = 2) => x.toFixed(digits);
// JSON quoting escapes C0 controls; C1 controls and the Unicode line separators would still move a terminal's cursor.
const show = (s: string) => JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

function runReport(
  question: string,
  line: TraceLine,
  opts: { format: string; headPath: string; demo: boolean; stopText: string | null; interventions: string | null },
): string {
  const out: string[] = [];
  const N = line.steps.length - 1;
  out.push(`question   ${question}`);
  out.push(`prompt     ${line.prompt_tokens.length} tokens (format ${opts.format}), ${N} latent steps; head ${opts.headPath}`);
  if (opts.demo) out.push('model      the built-in model organism (README: "The model organism")');
  if (opts.interventions) out.push(`intervened ${opts.interventions} (the steps below are of the intervened run)`);
  out.push('');
  out.push(`step   norm    cos   entropy  logit lens: top ${line.steps[0]?.top_k.length ?? 0} (shade ${SHADES.join('')} = probability 0..1)`);
  for (const s of line.steps) {
    const lens = s.top_k.map((t) => `${shade(t.prob)} ${show(t.token)} ${t.prob.toFixed(2).replace(/^0/, '')}`).join('  ');
    const cos = s.cosine_to_prev === null ? '   — ' : num(s.cosine_to_prev).padStart(5);
    out.push(`h${String(s.step).padEnd(4)} ${num(s.norm).padStart(6)}  ${cos}  ${num(s.entropy).padStart(6)}   ${lens}`);
  }
  if (N > 0) {
    const drift = line.steps.slice(1).map((s) => bar((1 - (s.cosine_to_prev ?? 1)) / 2)).join('');
    out.push(`drift  ${drift}   (1 − cos h_k, h_k−1 for k = 1..${N}; taller = the state moved more)`);
  }
  if (line.early_decodes.length) {
    out.push('', 'early decodes (the answer after k latent steps)');
    for (const e of line.early_decodes) out.push(`  k=${e.latents}${e.latents === N ? ' (answer)' : ''}`.padEnd(16) + show(e.answer));
  }
  for (const [kind, list] of Object.entries(line.ablations)) {
    out.push('', `${kind} ablation (one latent step ablated, later steps recomputed)`);
    for (const a of list ?? []) out.push(`  step ${a.step}`.padEnd(16) + show(a.answer));
  }
  out.push('');
  const stop = opts.stopText !== null ? `stopped at ${opts.stopText}` : `${line.answer_tokens.length}-token limit`;
  out.push(`answer         ${show(line.answer)}  (${line.answer_tokens.length} tokens, ${stop})`);
  if (line.no_reasoning_answer !== null) out.push(`no latents     ${show(line.no_reasoning_answer)}`);
  return out.join('\n') + '\n';
}

async function runCommand(question: string, opts: RunCliOptions): Promise<void> {
  if (question.trim() === '') throw new InputError('run: the question is empty');
  const opened = await openModelOrDemo(opts.model, opts.latentHead, (opts.quiet ?? false) || (opts.json ?? false));
  const model = opened.model;
  try {
    const head = requireLatentHead(model, opened.latentHead);
    const signal = interruptSignal(() => undefined);
    const r = await reason(model, question, {
      latentHead: head,
      latentSteps: opts.latentSteps,
      maxAnswerTokens: opts.maxAnswerTokens,
      lensTopK: opts.topK,
      earlyDecode: opts.earlyDecode,
      ablations: opts.ablations,
      seed: opts.seed,
      noReasoning: true,
      interventions: opts.intervene,
      threads: opts.threads,
      signal,
    });
    const line = traceLine({ id: 'question', text: question }, null, r);
    if (opts.json) {
      // The interventions belong to the record: without them the JSON would read like a clean run.
      process.stdout.write(JSON.stringify({ ...line, interventions: opts.intervene }, null, 2) + '\n');
      return;
    }
    process.stdout.write(
      runReport(question, line, {
        format: head.settings.promptFormat,
        headPath: head.settings.path,
        demo: opened.demo,
        stopText: r.stopToken === null ? null : JSON.stringify(model.tokenText(r.stopToken)),
        interventions: opts.intervene.length ? opts.intervene.map((iv) => JSON.stringify(iv)).join(', ') : null,
      }),
    );
  } finally {
    model.dispose();
  }
}

// ------------------------------------------------------------------ registration

function modelOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <path>', 'GGUF model with a latent head, or "demo" / "organism": the built-in model organism (the default)')
    .option('--latent-head <file>', 'latent-head sidecar (default: <model>.latent.gguf beside the model, or one inside it)')
    .addOption(new Option('--latent-steps <n>', "latent steps (default: the head's)").argParser(intArg(0, 4096)))
    .addOption(new Option('--max-answer-tokens <n>', 'answer tokens decoded after the latent steps').argParser(intArg(0)).default(32))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0));
}

function dataOptions(cmd: Command): Command {
  return cmd
    .option('--data <file.jsonl>', 'JSONL, one question a line in "question" or "prompt" (GSM8K works as is; "#### X" in "answer" is the gold answer)')
    .option('-p, --prompt <text>', 'one question instead of --data (record id "prompt")')
    .option('--field <name>', 'JSONL field holding the question')
    .addOption(new Option('--limit <n>', 'only the first N questions').argParser(intArg(1)));
}

export function registerReasoningCommands(program: Command): void {
  const traceCmd = program
    .command('trace')
    .description('run the latent reasoning loop on each question and write one JSON line per question (answer, logit lens per step, early decodes, ablations); reruns continue the file');
  shardOptions(modelOptions(dataOptions(traceCmd)))
    .requiredOption('-o, --out <traces.jsonl>', 'output JSONL (continued after its last complete line when it exists)')
    .option('--overwrite', 'start --out afresh instead of continuing it')
    .addOption(new Option('--ablations <kinds>', 'ablate each latent step in turn: zero, skip, noise (comma list)').argParser(choiceListArg(ABLATIONS)).default([], 'none'))
    .addOption(new Option('--noise-scale <s>', 'noise ablation: noise norm relative to the vector').argParser(floatArg(0, Infinity)).default(1))
    .option('--early-decode', 'also decode the answer after 0..N latent steps')
    .option('--no-reasoning', 'also decode the answer without latent steps (no_reasoning_answer)')
    .addOption(new Option('--top-k <k>', 'logit-lens tokens per step').argParser(intArg(1, 1000)).default(10))
    .addOption(new Option('--seed <n>', 'seed of noise ablations and of sampling').argParser(intArg(0)).default(0))
    .addOption(new Option('--temperature <t>', 'answer sampling; 0: greedy').argParser(floatArg(0, Infinity)).default(0))
    .option('--capture <dir>', 'also capture activations of the same runs into this folder (continued with the trace)')
    .addOption(
      new Option('--points <list>', 'with --capture: hook points (latent_proj, final_norm, resid_post, ...)')
        .argParser(pointsArg)
        .default(['resid_post', 'final_norm', 'latent_proj'], 'resid_post,final_norm,latent_proj'),
    )
    .addOption(new Option('--layers <list>', 'with --capture: layers of the layer points (all, 0,2,3, 0-3)').argParser(layersArg).default('all'))
    .addOption(new Option('--positions <list>', 'with --capture: all, or kinds (prompt,bot,latent,eot,answer) and/or indices').argParser(positionsArg))
    .addOption(new Option('--dtype <type>', 'with --capture: stored dtype').choices(['f32', 'f16', 'bf16']).default('f32'))
    .addOption(new Option('--shard-mb <mb>', 'with --capture: bound on one shard').argParser(floatArg(0, Infinity, true)).default(256))
    .option('--json', 'print the summary as JSON on stdout')
    .option('-q, --quiet', 'no progress or summary on stderr')
    .action((opts: TraceCliOptions) => traceCommand(opts));

  const evalCmd = program
    .command('eval')
    .description('GSM8K accuracy with and without latent steps (last number of the answer vs "#### X"), and throughput');
  shardOptions(modelOptions(dataOptions(evalCmd)))
    .option('-o, --out <results.jsonl>', 'keep each question\'s result as a trace line; a rerun continues the file (the summary covers all of it)')
    .option('--overwrite', 'with --out: start the file afresh')
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no progress on stderr')
    .action((opts: EvalCliOptions) => evalCommand(opts));

  const runCmd = program
    .command('run')
    .description('one question in the terminal: logit lens, norm and drift of every latent step, early decodes, the answer')
    .argument('<question>', 'the question text');
  modelOptions(runCmd)
    .addOption(new Option('--top-k <k>', 'logit-lens tokens per step').argParser(intArg(1, 100)).default(5))
    .addOption(new Option('--ablations <kinds>', 'also ablate each latent step: zero, skip, noise').argParser(choiceListArg(ABLATIONS)).default([], 'none'))
    .option('--no-early-decode', 'skip the early decodes')
    .addOption(new Option('--seed <n>', 'seed of noise ablations').argParser(intArg(0)).default(0))
    .addOption(
      new Option('--intervene <list>', 'on the main run: zero:K, skip:K, noise:K[:SCALE[:SEED]], swap:I:J; zero/noise take @POINT (e.g. zero:2@resid_post.1)')
        .argParser(interventionsArg)
        .default([], 'none'),
    )
    .option('--json', 'print the trace line (as trace writes it) as JSON')
    .option('-q, --quiet', 'no notice about the demo model')
    .action((question: string, opts: RunCliOptions) => runCommand(question, opts));

  const sweepCmd = program
    .command('patch-sweep')
    .description("activation patching: the clean question's state at every (latent step x hook point) written into the corrupted run; how much of the clean answer comes back");
  modelOptions(sweepCmd)
    .requiredOption('--clean <question>', 'the clean question')
    .requiredOption('--corrupted <question>', 'the same question with one thing changed (a number, say)')
    .addOption(new Option('--layers <list>', 'resid_post layers to patch (default all; the fed embedding is always swept)').argParser(layersArg))
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'no notice about the built-in model')
    .action((opts: PatchSweepCliOptions) => patchSweepCommand(opts));

  program
    .command('invert')
    .description('latent inversion: the short texts which, written after the question, bring the model closest (cosine) to a latent step\'s captured state; a beam over the model\'s own next-token distribution')
    .option('-m, --model <path>', 'the model the capture was made with, or "demo" / "organism" (the default)')
    .requiredOption('--capture <dir>', 'capture folder of the reasoning loop with resid_post at the latent positions')
    .requiredOption('--record <id>', 'the record (question) id in the capture')
    .addOption(new Option('--step <k>', 'latent step, 0-based').argParser(intArg(0)).makeOptionMandatory())
    .addOption(new Option('--layer <l>', 'resid_post layer compared (default the deepest captured)').argParser(intArg(0)))
    .addOption(new Option('--max-tokens <n>', 'longest text tried').argParser(intArg(1, 64)).default(12))
    .addOption(new Option('--beam <n>', 'beams kept and next tokens tried per beam').argParser(intArg(1, 64)).default(8))
    .addOption(new Option('--top <n>', 'texts printed').argParser(intArg(1, 256)).default(8))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'no notice about the built-in model')
    .action((opts: InvertCliOptions) => invertCommand(opts));
}

interface InvertCliOptions {
  model?: string;
  capture: string;
  record: string;
  step: number;
  layer?: number;
  maxTokens: number;
  beam: number;
  top: number;
  threads: number;
  json?: boolean;
  quiet?: boolean;
}

async function invertCommand(opts: InvertCliOptions): Promise<void> {
  const opened = await openModelOrDemo(opts.model, undefined, (opts.quiet ?? false) || (opts.json ?? false));
  try {
    const r = await invertLatent(opened.model, opts.capture, opts.record, opts.step, { layer: opts.layer, maxTokens: opts.maxTokens, beam: opts.beam, top: opts.top, threads: opts.threads });
    if (opts.json) {
      process.stdout.write(JSON.stringify(r, null, 1) + '\n');
      return;
    }
    const lines = [`record ${r.record}, latent step ${r.step}, ${r.point}: texts after the question closest to the latent state`, '  cosine  text'];
    for (const c of r.candidates) lines.push(`  ${c.cosine.toFixed(4)}  ${JSON.stringify(c.text)}`);
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    opened.model.dispose();
  }
}

interface PatchSweepCliOptions {
  model?: string;
  latentHead?: string;
  latentSteps?: number;
  maxAnswerTokens: number;
  threads: number;
  clean: string;
  corrupted: string;
  layers?: number[] | 'all';
  json?: boolean;
  quiet?: boolean;
}

async function patchSweepCommand(opts: PatchSweepCliOptions): Promise<void> {
  const opened = await openModelOrDemo(opts.model, opts.latentHead, (opts.quiet ?? false) || (opts.json ?? false));
  try {
    const r = await patchSweep(opened.model, opts.clean, opts.corrupted, {
      latentHead: opened.latentHead,
      latentSteps: opts.latentSteps,
      maxAnswerTokens: Math.max(1, opts.maxAnswerTokens),
      layers: Array.isArray(opts.layers) ? opts.layers : undefined,
      threads: opts.threads,
    });
    if (opts.json) {
      process.stdout.write(JSON.stringify(r, null, 1) + '\n');
      return;
    }
    const tok = JSON.stringify(opened.model.detokenize([r.target]));
    const lines = [
      `clean      ${JSON.stringify(r.clean.answer)}  P(${tok}) = ${r.clean.pClean.toFixed(3)}`,
      `corrupted  ${JSON.stringify(r.corrupted.answer)}  P(${tok}) = ${r.corrupted.pClean.toFixed(3)}`,
      `recovered: (P(patched) - P(corrupted)) / (P(clean) - P(corrupted)), the clean state of step k at each point`,
      `  step  ${r.points.map((p) => p.padStart(13)).join('')}`,
      ...r.recovered.map((row, k) => `  ${String(k).padStart(4)}  ${row.map((x) => (x === null ? '-' : x.toFixed(2)).padStart(13)).join('')}`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    opened.model.dispose();
  }
}
