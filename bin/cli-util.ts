// Argument parsers, model opening and progress lines shared by the lro-native commands.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { statSync } from 'node:fs';
import { POSITION_KINDS } from '../lib/reasoning/reason.js';
import { builtinModel, ensureDemoModel, isBuiltinModel } from '../lib/engine/demo-model.js';
import { InputError } from '../lib/core/errors.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { readPromptJsonl } from '../lib/capture/jsonl.js';
import { MAX_SHARDS, resolveShard, shardOfId, type Shard } from '../lib/core/shard.js';

// ------------------------------------------------------------------ argument parsers

export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(max === Number.MAX_SAFE_INTEGER ? `expected an integer >= ${min}` : `expected an integer in [${min}, ${max}]`);
    return n;
  };
}

/** Most threads a command takes: more than this is a typo, not a machine. */
export const MAX_THREADS = 256;
/** --threads: 0 (the physical cores) or 1..MAX_THREADS. */
export function threadsArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > MAX_THREADS)
    throw new InvalidArgumentError(`expected 0 (the physical cores) or a thread count up to ${MAX_THREADS}; got "${value}"`);
  return n;
}

export function floatArg(min: number, max: number, minExclusive = false) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n > max || (minExclusive ? n <= min : n < min))
      throw new InvalidArgumentError(`expected a number ${minExclusive ? '>' : '>='} ${min}${Number.isFinite(max) ? ` and <= ${max}` : ''}`);
    return n;
  };
}

export function tokenListArg(value: string): number[] {
  const parts = value.trim().replace(/^\[|\]$/g, '').split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0) throw new InvalidArgumentError('expected comma-separated token ids, e.g. 1997,32,613');
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new InvalidArgumentError(`expected comma-separated token ids, got "${p}"`);
    return Number(p);
  });
}

/** "0-3" -> [0, 1, 2, 3]; "5" -> [5]; null when the part is neither. */
function range(part: string): number[] | null {
  const m = /^(\d+)(?:-(\d+))?$/.exec(part);
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (b < a || b - a > 1 << 16) return null;
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

export function layersArg(value: string): 'all' | number[] {
  if (value.trim() === 'all') return 'all';
  const out: number[] = [];
  for (const p of value.split(',').map((s) => s.trim())) {
    const r = range(p);
    if (!r) throw new InvalidArgumentError('expected "all", or layer numbers and ranges, e.g. 0,2,3 or 0-3,8');
    for (const l of r) if (!out.includes(l)) out.push(l);
  }
  return out;
}

export function pointsArg(value: string): string[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new InvalidArgumentError('expected comma-separated point names, e.g. logits,final_norm,resid_post');
  return parts;
}

export type PositionSelector = (typeof POSITION_KINDS)[number] | number;

/** "all" (undefined), or kinds and indices/ranges: "latent", "bot,latent,eot", "0-3,latent". */
export function positionsArg(value: string): PositionSelector[] | undefined {
  if (value.trim() === 'all') return undefined;
  const out: PositionSelector[] = [];
  for (const p of value.split(',').map((s) => s.trim())) {
    if ((POSITION_KINDS as readonly string[]).includes(p)) {
      if (!out.includes(p as PositionSelector)) out.push(p as PositionSelector);
      continue;
    }
    const r = range(p);
    if (!r) throw new InvalidArgumentError(`expected "all", or position kinds (${POSITION_KINDS.join(', ')}) and indices or ranges, e.g. latent or bot,latent,eot or 0-9; got "${p}"`);
    for (const i of r) if (!out.includes(i)) out.push(i);
  }
  return out;
}

/** A comma list whose items must come from `choices` ("none" or "" gives []). */
export function choiceListArg<T extends string>(choices: readonly T[]) {
  return (value: string): T[] => {
    if (value.trim() === '' || value.trim() === 'none') return [];
    const out: T[] = [];
    for (const p of value.split(',').map((s) => s.trim())) {
      if (!(choices as readonly string[]).includes(p)) throw new InvalidArgumentError(`expected a comma list of ${choices.join(', ')}; got "${p}"`);
      if (!out.includes(p as T)) out.push(p as T);
    }
    return out;
  };
}

// ------------------------------------------------------------------ files and models

export function requireFile(path: string, what: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new InputError(`${what} not found: ${path}`);
  }
  if (!st.isFile()) throw new InputError(`${what} is not a file: ${path}`);
}

/** A --base / --model value: the built-in model's path, or a file that must exist. */
export function modelPathArg(spec: string | undefined, what: string): string {
  if (isBuiltinModel(spec)) return builtinModel().model;
  requireFile(spec, what);
  return spec;
}

export async function openModel(path: string, vocabOnly = false): Promise<Model> {
  requireFile(path, 'model file');
  return loadModel(path, { vocabOnly });
}

export interface OpenedModel {
  model: Model;
  /** The demo's sidecar, or the --latent-head given. */
  latentHead?: string;
  demo: boolean;
}

export const DEMO_NOTICE =
  'the built-in model is the organism: a small latent reasoner lro-native trained on word problems with known intermediate values (README: "The model organism")';

/** --model PATH, or the built-in demo model when it is omitted or "demo" (written on first use). */
export async function openModelOrDemo(spec: string | undefined, latentHead: string | undefined, quiet: boolean): Promise<OpenedModel> {
  if (latentHead !== undefined) requireFile(latentHead, 'latent head file');
  if (isBuiltinModel(spec)) {
    const demo = await ensureDemoModel();
    if (!quiet) process.stderr.write(`lro-native: ${spec ? '' : 'no --model given; '}using the built-in model organism ${demo.model}\n`);
    return { model: await loadModel(demo.model), latentHead: latentHead ?? demo.latentHead, demo: true };
  }
  return { model: await openModel(spec), latentHead, demo: false };
}

// ------------------------------------------------------------------ runs

export function isAbort(e: unknown): boolean {
  return e instanceof Error && e.name === 'AbortError';
}

/** An AbortSignal that fires on the first Ctrl-C; a second one exits at once. */
export function interruptSignal(onFirst: () => void): AbortSignal {
  const ac = new AbortController();
  let count = 0;
  process.on('SIGINT', () => {
    if (++count > 1) process.exit(130);
    onFirst();
    ac.abort();
  });
  process.on('SIGTERM', () => ac.abort());
  return ac.signal;
}

/**
 * A progress line on stderr: redrawn in place on a terminal (at most 10 times a second), a line
 * every few seconds in a log file (so logs stay readable).
 */
export function progressLine<P>(enabled: boolean, format: (p: P) => string): { update: (p: P) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let lastPrint = 0;
  let shown = false;
  return {
    update(p) {
      if (!enabled) return;
      const now = Date.now();
      if (tty) {
        if (now - lastPrint < 100) return;
        process.stderr.write(`\r\x1b[K${format(p)}`);
      } else {
        if (lastPrint !== 0 && now - lastPrint < 5000) return;
        process.stderr.write(format(p) + '\n');
      }
      lastPrint = now;
      shown = true;
    },
    end() {
      // The summary line follows; a terminal's live line only needs ending.
      if (enabled && tty && shown) process.stderr.write('\n');
    },
  };
}

/** "42s", "3m05s", "1h02m" */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** "12/100 (3 skipped), 1.5/s, ~58s left" */
export function progressCounts(done: number, skipped: number, total: number | undefined, elapsedMs: number, unit: string): string {
  const secs = elapsedMs / 1000;
  const rate = secs > 0 ? done / secs : 0;
  const of = total !== undefined ? `/${total}` : '';
  const left = total !== undefined ? total - done - skipped : 0;
  const eta = rate > 0 && left > 0 ? `, ~${Math.ceil(left / rate)}s left` : '';
  const sk = skipped ? ` (${skipped} already done)` : '';
  return `${done + skipped}${of} ${unit}${sk}, ${rate.toFixed(rate < 10 ? 2 : 1)} ${unit}/s${eta}`;
}

// ------------------------------------------------------------------ sharding

export interface ShardCliOptions {
  shard?: string;
  shardCount?: number;
}

/** --shard I/N and --shard-count N (see lib/core/shard.ts for the environment a cluster sets). */
export function shardOptions(cmd: Command, what = 'run only'): Command {
  return cmd
    .option(
      '--shard <I/N>',
      `${what} shard I of N (0-based; a record's shard is a hash of its id); the output gets ".shard-I-of-N" and is joined by merge. ` +
        'Default: from SLURM_ARRAY_TASK_ID (Slurm job arrays) or JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs); "none": never sharded',
    )
    .addOption(new Option('--shard-count <n>', 'the number of shards, with JOB_COMPLETION_INDEX (or LRO_SHARD_COUNT)').argParser(intArg(1, MAX_SHARDS)));
}

/** The shard of this run, or null; `none` turns the environment's off. */
export function shardOf(opts: ShardCliOptions): Shard | null {
  if (opts.shard === 'none') return null;
  return resolveShard(opts.shard, opts.shardCount);
}

/** Records of the shard in a JSONL file (for progress totals). */
export async function countShardRecords(path: string, shard: Shard, fields: readonly string[] | undefined, limit: number | undefined): Promise<number> {
  let n = 0;
  for await (const r of readPromptJsonl(path, { fields, limit })) if (shardOfId(r.id, shard.count) === shard.index) n++;
  return n;
}

// ------------------------------------------------------------------ training commands

/** The optimizer and schedule flags of the training commands (train-oracle, train-latent). */
export interface OptimizerCliOptions {
  lr: number;
  weightDecay: number;
  batchSize: number;
  gradAccum: number;
  clip: number;
  schedule: 'constant' | 'linear' | 'cosine';
  warmup: number;
  epochs: number;
  steps?: number;
}

/** A training run stopped by Ctrl-C: say where it stopped and exit 130 (its checkpoint resumes it). */
export function exitIfAborted(e: unknown): void {
  if (!isAbort(e)) return;
  process.stderr.write(`lro-native: ${(e as Error).message}\n`);
  process.exit(130);
}
