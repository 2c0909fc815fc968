// `lro-native train-oracle`, `ask` and `eval-oracle`: activation-oracle LoRA training, one
// question about vectors, and accuracy against the no-vector and shuffled-vector baselines.
// The caller's program wires them in with registerOracleCommands.
import { Command, InvalidArgumentError, Option } from 'commander';
import { askOracle, type OracleVectorSource } from '../../lib/oracle/ask-oracle.js';
import { InputError } from '../../lib/core/errors.js';
import { writeFileAtomic } from '../../lib/core/atomic-file.js';
import { evalOracle, type GroupReport, type EvalOracleProgress, type EvalOracleReport, type Score } from '../../lib/oracle/eval-oracle.js';
import { ADAPTER_FORMATS, LORA_TARGETS, trainOracle, type TrainOracleProgress, type TrainOracleSummary } from '../../lib/oracle/train-oracle.js';
import { type OptimizerCliOptions, shardOf, shardOptions, type ShardCliOptions, duration, floatArg, intArg, interruptSignal, isAbort, modelPathArg, progressCounts, progressLine, requireFile, threadsArg } from '../cli-util.js';
import { shardPath } from '../../lib/core/shard.js';

/** "0,1,2", "0-5" or "1,3-4": non-negative integers, in the order given. */
function indexListArg(value: string): number[] {
  const out: number[] = [];
  for (const part of value.split(',').map((s) => s.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m || (m[2] !== undefined && Number(m[2]) < Number(m[1])))
      throw new InvalidArgumentError(`expected comma-separated indices or ranges, e.g. 0,1,2 or 1-6; got "${part}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

type LoraTarget = (typeof LORA_TARGETS)[number];

function targetsArg(value: string): 'all' | LoraTarget[] {
  if (value.trim() === 'all') return 'all';
  const parts = value.split(',').map((s) => s.trim().replace(/_proj$/, ''));
  for (const p of parts)
    if (!(LORA_TARGETS as readonly string[]).includes(p)) throw new InvalidArgumentError(`expected "all" or a comma list of ${LORA_TARGETS.join(', ')}; got "${p}"`);
  return [...new Set(parts)] as LoraTarget[];
}

function formatsArg(value: string): ('gguf' | 'peft')[] {
  const parts = [...new Set(value.split(',').map((s) => s.trim()))];
  for (const p of parts)
    if (!(ADAPTER_FORMATS as readonly string[]).includes(p)) throw new InvalidArgumentError(`expected a comma list of ${ADAPTER_FORMATS.join(', ')}; got "${p}"`);
  return parts as ('gguf' | 'peft')[];
}

function bar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.min(width, Math.round((done / total) * width)) : 0;
  return `[${'#'.repeat(f)}${'.'.repeat(width - f)}]`;
}

function trainProgressText(p: TrainOracleProgress): string {
  if (p.phase === 'prepare') return `train-oracle: reading examples ${p.examples ?? 0}`;
  const head = `step ${p.step}/${p.totalSteps} ${bar(p.step, p.totalSteps)}`;
  if (p.phase === 'validate') return `${head} validating`;
  if (p.phase === 'save') return `${head} saving`;
  const parts = [head, `epoch ${p.epoch + 1}`, `loss ${p.loss?.toFixed(4)}`, `lr ${p.lr?.toExponential(2)}`];
  if (p.valLoss !== undefined) parts.push(`val ${p.valLoss.toFixed(4)}`);
  parts.push(`${Math.round(p.tokensPerSec)} tok/s`);
  if (p.etaMs !== null) parts.push(`ETA ${duration(p.etaMs)}`);
  return parts.join('  ');
}

function reportTrain(s: TrainOracleSummary): void {
  const lines = [
    `trained ${s.steps}/${s.totalSteps} steps${s.resumedFrom !== null ? ` (resumed at step ${s.resumedFrom})` : ''} on ${s.trainExamples} examples, ${s.epochs} epoch(s)`,
    `  LoRA r ${s.rank}, alpha ${s.alpha}, targets ${s.targets.join(',')}: ${s.trainableParams.toLocaleString('en-US')} parameters`,
    `  final batch loss ${s.loss === null ? 'n/a' : s.loss.toFixed(4)}${s.valLoss !== null ? `, validation loss ${s.valLoss.toFixed(4)} (${s.valExamples} examples)` : ''}`,
    `  ${s.tokens.toLocaleString('en-US')} tokens in ${duration(s.elapsedMs)} (${Math.round(s.tokensPerSec)} tok/s while stepping)`,
  ];
  if (s.adapter.gguf) lines.push(`  adapter (llama.cpp GGUF): ${s.adapter.gguf}`);
  if (s.adapter.peft) lines.push(`  adapter (PEFT folder):    ${s.adapter.peft}`);
  lines.push(`  log: ${s.log}; checkpoint: ${s.checkpoint}`);
  process.stdout.write(lines.join('\n') + '\n');
}

function pct(x: number | null): string {
  return x === null ? '   n/a' : `${(100 * x).toFixed(1).padStart(5)}%`;
}

function scoreText(s: Score): string {
  if (s.n === 0) return 'n/a';
  const ci = s.ci95 ? ` [${pct(s.ci95[0]).trim()}, ${pct(s.ci95[1]).trim()}]` : '';
  return `${pct(s.accuracy)}${ci}`;
}

function reportEval(r: EvalOracleReport): void {
  const withBase = r.overall.questionOnly.exact.n > 0;
  const rows: string[][] = [['task', 'n', 'metric', 'oracle', 'no vectors', 'shuffled', ...(withBase ? ['question only'] : [])]];
  const add = (name: string, g: GroupReport) => {
    const cells = (m: 'exact' | 'numeric') => [g.oracle, g.noVectors, g.shuffled, ...(withBase ? [g.questionOnly] : [])].map((c) => scoreText(c[m]));
    rows.push([name, String(g.n), 'exact', ...cells('exact')]);
    if (g.nNumeric > 0) rows.push(['', String(g.nNumeric), 'numeric', ...cells('numeric')]);
  };
  for (const [task, g] of Object.entries(r.tasks)) add(task, g);
  if (Object.keys(r.tasks).length > 1) add('(all)', r.overall);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const text = rows.map((row) => row.map((cell, c) => (c === 1 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd());
  process.stdout.write(`${text.join('\n')}\n(95% bootstrap intervals, ${r.settings.bootstrap} resamples; greedy answers, at most ${r.settings.maxTokens} tokens)\n`);
}

interface TrainCliOptions extends OptimizerCliOptions {
  base: string;
  data: string;
  val?: string;
  out: string;
  initAdapter?: string;
  loraR: number;
  loraAlpha: number;
  loraDropout: number;
  rslora?: boolean;
  targets: 'all' | LoraTarget[];
  injectLayer: number;
  injectCoef: number;
  seed: number;
  shuffle: boolean;
  groupByLength: boolean;
  log?: string;
  format: ('gguf' | 'peft')[];
  resume?: boolean;
  saveEvery: number;
  evalEvery: number;
  threads: number;
  recompute?: boolean;
  packTokens: number;
  json?: boolean;
  quiet?: boolean;
}

interface AskCliOptions {
  base: string;
  adapter: string;
  vectors?: string;
  key?: string;
  rows?: number[];
  capture?: string;
  record?: string;
  step?: number[];
  position?: number[];
  layer?: number;
  point?: string;
  injectLayer?: number;
  injectCoef?: number;
  maxTokens: number;
  temperature: number;
  seed: number;
  threads: number;
  json?: boolean;
}

interface EvalCliOptions extends ShardCliOptions {
  base: string;
  adapter: string;
  data: string;
  out?: string;
  predictions?: string;
  resume?: boolean;
  problems?: string;
  maxTokens: number;
  batchSize: number;
  seed: number;
  bootstrap: number;
  limit?: number;
  injectLayer?: number;
  injectCoef?: number;
  threads: number;
  json?: boolean;
  quiet?: boolean;
}

function vectorSource(o: AskCliOptions): OracleVectorSource {
  const fromFile = o.vectors !== undefined;
  const fromCapture = o.capture !== undefined;
  if (fromFile === fromCapture) throw new InputError('ask: give vectors with --vectors FILE --key K --rows R, or --capture DIR --record ID --step K --layer L');
  if (fromFile) {
    requireFile(o.vectors!, 'vectors file');
    if (o.key === undefined || o.rows === undefined) throw new InputError('ask: --vectors needs --key (the tensor) and --rows (its rows)');
    return { file: o.vectors!, key: o.key, rows: o.rows };
  }
  if (o.record === undefined) throw new InputError('ask: --capture needs --record (a record id of the capture)');
  if (o.layer === undefined) throw new InputError('ask: --capture needs --layer (vectors are read at resid_post.<layer>)');
  if ((o.step === undefined) === (o.position === undefined)) throw new InputError('ask: --capture needs --step (latent steps) or --position (sequence positions)');
  return { capture: o.capture!, record: o.record, layer: o.layer, steps: o.step, positions: o.position, point: o.point };
}

export function registerOracleCommands(program: Command): void {
  program
    .command('train-oracle')
    .description('train an activation-oracle LoRA on a frozen GGUF base (resumable; writes a llama.cpp GGUF adapter and a PEFT folder)')
    .requiredOption('--base <model.gguf>', 'base model (any weight type)')
    .requiredOption('--data <train.jsonl>', 'training examples (see README: oracle data format)')
    .option('--val <val.jsonl>', 'validation examples: loss at --eval-every steps and at the end')
    .requiredOption('--out <dir>', 'output folder: checkpoint, log, adapter.gguf, peft/')
    .option('--init-adapter <path>', 'start from this adapter (PEFT folder or .gguf); its rank, alpha and targets win')
    .addOption(new Option('--lora-r <n>', 'LoRA rank').argParser(intArg(1, 4096)).default(64))
    .addOption(new Option('--lora-alpha <a>', 'LoRA alpha (scale alpha / r)').argParser(floatArg(0, Infinity, true)).default(128))
    .addOption(new Option('--lora-dropout <p>', 'dropout on the LoRA input').argParser(floatArg(0, 0.99)).default(0))
    .option('--rslora', 'scale alpha / sqrt(r)')
    .addOption(new Option('--targets <list>', `all, or a comma list of ${LORA_TARGETS.join(',')}`).argParser(targetsArg).default('all'))
    .addOption(new Option('--lr <x>', 'peak learning rate (AdamW)').argParser(floatArg(0, Infinity, true)).default(1e-5))
    .addOption(new Option('--weight-decay <x>', 'decoupled weight decay').argParser(floatArg(0, Infinity)).default(0.01))
    .addOption(new Option('--batch-size <n>', 'examples per micro-batch').argParser(intArg(1, 1 << 20)).default(16))
    .addOption(new Option('--grad-accum <n>', 'micro-batches per optimizer step').argParser(intArg(1, 1 << 20)).default(1))
    .addOption(new Option('--clip <x>', 'gradient-norm clip (0 disables)').argParser(floatArg(0, Infinity)).default(1.0))
    .addOption(new Option('--schedule <s>', 'learning-rate schedule after warmup').choices(['constant', 'linear', 'cosine']).default('constant'))
    .addOption(new Option('--warmup <f>', 'warmup as a fraction of all steps').argParser(floatArg(0, 1)).default(0.1))
    .addOption(new Option('--epochs <n>', 'passes over the data').argParser(intArg(1, 1 << 20)).default(1))
    .addOption(new Option('--steps <n>', 'optimizer steps (overrides --epochs)').argParser(intArg(1)))
    .addOption(new Option('--inject-layer <l>', 'inject at the output of this block (-1: the input embeddings)').argParser(intArg(-1, 4096)).default(1))
    .addOption(new Option('--inject-coef <x>', 'h += coef * ||h|| * v / ||v||').argParser(floatArg(0, Infinity, true)).default(1))
    .addOption(new Option('--seed <n>', 'data order, LoRA init, dropout').argParser(intArg(0, 0xffffffff)).default(0))
    .option('--no-shuffle', 'examples in file order (and no length grouping)')
    .option('--no-group-by-length', 'shuffle without grouping similar lengths into batches')
    .option('--log <file>', 'per-step JSONL log (default OUT/log.jsonl)')
    .addOption(new Option('--format <list>', 'adapter outputs: gguf, peft or both').argParser(formatsArg).default(['gguf', 'peft'], 'gguf,peft'))
    .option('--resume', 'continue the run in --out from its checkpoint (same result as an uninterrupted run)')
    .addOption(new Option('--save-every <n>', 'checkpoint every N steps (0: at the end and on stop only)').argParser(intArg(0)).default(100))
    .addOption(new Option('--eval-every <n>', 'validation every N steps (0: at the end only)').argParser(intArg(0)).default(100))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--recompute', 'recompute activations in backward (less memory, slower)')
    .addOption(new Option('--pack-tokens <n>', 'examples of a micro-batch share a forward pass up to this many tokens').argParser(intArg(0)).default(4096))
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(async (opts: TrainCliOptions) => {
      opts.base = modelPathArg(opts.base, 'base model');
      requireFile(opts.data, 'training data');
      if (opts.val) requireFile(opts.val, 'validation data');
      const progress = progressLine<TrainOracleProgress>(!opts.quiet, trainProgressText);
      const signal = interruptSignal(() => process.stderr.write('\ntrain-oracle: stopping after the current step (Ctrl-C again to quit at once)\n'));
      let summary: TrainOracleSummary;
      try {
        summary = await trainOracle(
          {
            base: opts.base,
            data: opts.data,
            val: opts.val,
            out: opts.out,
            initAdapter: opts.initAdapter,
            loraR: opts.loraR,
            loraAlpha: opts.loraAlpha,
            loraDropout: opts.loraDropout,
            rslora: opts.rslora ?? false,
            targets: opts.targets,
            lr: opts.lr,
            weightDecay: opts.weightDecay,
            batchSize: opts.batchSize,
            gradAccum: opts.gradAccum,
            clip: opts.clip,
            schedule: opts.schedule,
            warmup: opts.warmup,
            epochs: opts.epochs,
            steps: opts.steps,
            injectLayer: opts.injectLayer,
            injectCoef: opts.injectCoef,
            seed: opts.seed,
            shuffle: opts.shuffle,
            groupByLength: opts.groupByLength,
            log: opts.log,
            format: opts.format,
            resume: opts.resume ?? false,
            saveEvery: opts.saveEvery,
            evalEvery: opts.evalEvery,
            threads: opts.threads,
            recompute: opts.recompute ?? false,
            packTokens: opts.packTokens,
          },
          { onProgress: progress.update, signal },
        );
      } catch (e) {
        progress.end();
        if (isAbort(e)) process.stderr.write(`train-oracle: ${(e as Error).message}\n`);
        throw e;
      }
      progress.end();
      if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else reportTrain(summary);
    });

  program
    .command('ask')
    .description('ask a trained activation oracle a question about vectors (greedy by default)')
    .argument('<question...>', 'the question, e.g. "What is the model thinking about?"')
    .requiredOption('--base <model.gguf>', 'base model the oracle was trained on')
    .requiredOption('--adapter <path>', 'oracle adapter: .gguf or PEFT folder (its oracle.json gives the injection settings)')
    .option('--vectors <file.safetensors>', 'vectors from a safetensors file (with --key and --rows)')
    .option('--key <name>', 'tensor [rows, width] in --vectors')
    .addOption(new Option('--rows <list>', 'rows of --key, e.g. 0,1,2 or 3-5').argParser(indexListArg))
    .option('--capture <dir>', 'vectors from a capture folder (with --record, --step or --position, --layer)')
    .option('--record <id>', 'record id in the capture')
    .addOption(new Option('--step <list>', 'latent steps (0: the bot position, k: after latent step k), e.g. 3 or 1-6').argParser(indexListArg))
    .addOption(new Option('--position <list>', 'sequence positions instead of latent steps').argParser(indexListArg))
    .addOption(new Option('--layer <L>', 'layer the vectors were read at (resid_post.L of a capture; the prompt says "Layer: L")').argParser(intArg(0, 4096)))
    .option('--point <name>', 'capture hook point instead of resid_post.<layer>')
    .addOption(new Option('--inject-layer <l>', "override the adapter's injection block").argParser(intArg(-1, 4096)))
    .addOption(new Option('--inject-coef <x>', "override the adapter's injection coefficient").argParser(floatArg(0, Infinity, true)))
    .addOption(new Option('--max-tokens <n>', 'answer tokens at most').argParser(intArg(1, 65536)).default(64))
    .addOption(new Option('--temperature <t>', '0: greedy').argParser(floatArg(0, Infinity)).default(0))
    .addOption(new Option('--seed <n>', 'sampling seed').argParser(intArg(0, 0xffffffff)).default(0))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--json', 'print the answer with its prompt and tokens as JSON')
    .action(async (words: string[], opts: AskCliOptions) => {
      const question = words.join(' ');
      opts.base = modelPathArg(opts.base, 'base model');
      const source = vectorSource(opts);
      const signal = interruptSignal(() => undefined);
      const r = await askOracle(opts.base, opts.adapter, source, question, {
        layer: opts.layer,
        injectLayer: opts.injectLayer,
        injectCoef: opts.injectCoef,
        maxTokens: opts.maxTokens,
        temperature: opts.temperature,
        seed: opts.seed,
        threads: opts.threads,
        signal,
      });
      if (opts.json) process.stdout.write(JSON.stringify({ question, ...r }, null, 2) + '\n');
      else process.stdout.write(r.answer + '\n');
    });

  const evalOracleCmd = program
    .command('eval-oracle')
    .description('oracle accuracy per task (exact and numeric match) against no-vector and shuffled-vector baselines, with 95% bootstrap intervals')
    .requiredOption('--base <model.gguf>', 'base model')
    .requiredOption('--adapter <path>', 'oracle adapter: .gguf or PEFT folder')
    .requiredOption('--data <test.jsonl>', 'examples in the oracle data format')
    .option('--out <report.json>', 'also write the report here')
    .option('--predictions <file.jsonl>', 'per-example answers, appended as batches finish (resumable)')
    .option('--resume', 'continue --predictions: examples already in it are not asked again')
    .option('--problems <file.jsonl>', 'the trace (or dataset) the vectors came from: adds the question-only baseline (the base model on the problem and the task question)')
    .addOption(new Option('--max-tokens <n>', 'answer tokens at most').argParser(intArg(1, 65536)).default(64))
    .addOption(new Option('--batch-size <n>', 'examples decoded together').argParser(intArg(1, 4096)).default(16))
    .addOption(new Option('--seed <n>', 'shuffled baseline and bootstrap').argParser(intArg(0, 0xffffffff)).default(0))
    .addOption(new Option('--bootstrap <n>', 'bootstrap resamples (0: no intervals)').argParser(intArg(0, 1_000_000)).default(1000))
    .addOption(new Option('--limit <n>', 'only the first N examples').argParser(intArg(1)))
    .addOption(new Option('--inject-layer <l>', "override the adapter's injection block").argParser(intArg(-1, 4096)))
    .addOption(new Option('--inject-coef <x>', "override the adapter's injection coefficient").argParser(floatArg(0, Infinity, true)))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--json', 'print the report as JSON')
    .option('-q, --quiet', 'no progress output');
  shardOptions(evalOracleCmd).action(async (opts: EvalCliOptions) => {
      opts.base = modelPathArg(opts.base, 'base model');
      requireFile(opts.data, 'examples file');
      if (opts.resume && !opts.predictions) throw new InputError('eval-oracle: --resume continues a --predictions file; give one');
      const shard = shardOf(opts);
      if (shard && !opts.predictions) throw new InputError('eval-oracle: a sharded run needs --predictions (each shard keeps its answers there; merge joins them, and `eval-oracle --predictions MERGED --resume` reports on all)');
      if (shard) opts.predictions = shardPath(opts.predictions!, shard, 'file');
      const progress = progressLine<EvalOracleProgress>(!opts.quiet, (p) => `eval-oracle: ${progressCounts(p.done, p.skipped, p.total, p.elapsedMs, 'examples')}`);
      const signal = interruptSignal(() =>
        process.stderr.write(`\neval-oracle: stopping${opts.predictions ? `; answers so far are in ${opts.predictions} (rerun with --resume)` : ''}\n`),
      );
      let report: EvalOracleReport;
      try {
        report = await evalOracle(opts.base, opts.adapter, opts.data, {
          maxTokens: opts.maxTokens,
          batchSize: opts.batchSize,
          seed: opts.seed,
          bootstrap: opts.bootstrap,
          limit: opts.limit,
          injectLayer: opts.injectLayer,
          injectCoef: opts.injectCoef,
          threads: opts.threads,
          predictions: opts.predictions,
          resume: opts.resume ?? false,
          ...(opts.problems ? { problems: opts.problems } : {}),
          ...(shard ? { shard } : {}),
          signal,
          onProgress: progress.update,
        });
      } finally {
        progress.end();
      }
      const text = JSON.stringify(report, null, 2) + '\n';
      if (opts.out) await writeFileAtomic(opts.out, text);
      if (opts.json) process.stdout.write(text);
      else reportEval(report);
    });
}
