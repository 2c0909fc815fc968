// What every training command shares: the seeded batch plan (a pure function of the data's
// lengths and the seed, so a resume replays it), the run identity check, the log truncation on
// resume, and the data fingerprint.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { abortError, InputError } from '../core/errors.js';
import { writeFileAtomic } from '../core/atomic-file.js';
import { mixSeed, rng, shuffleInPlace } from '../core/random.js';

const int = z.number().int();

/**
 * The optimizer, schedule, batching and run-control options every trainer takes, in one place;
 * the defaults that differ between trainers are given by each.
 */
export function trainingRunFields(d: { lr: number; batchSize: number; warmup: number }) {
  return {
    lr: z.number().positive().finite().default(d.lr),
    weightDecay: z.number().min(0).finite().default(0.01),
    /** Examples per micro-batch. */
    batchSize: int.positive().default(d.batchSize),
    /** Micro-batches per optimizer step (each its own mean, averaged; HF Trainer's convention). */
    gradAccum: int.positive().default(1),
    /** Global gradient-norm clip; 0 disables. */
    clip: z.number().min(0).finite().default(1.0),
    schedule: z.enum(['constant', 'linear', 'cosine']).default('constant'),
    /** Warmup as a fraction of all steps (rounded up), linear from 0. */
    warmup: z.number().min(0).max(1).default(d.warmup),
    epochs: int.positive().default(1),
    /** Total optimizer steps; overrides epochs (the data is cycled, reshuffled each epoch). */
    steps: int.positive().optional(),
    seed: int.min(0).max(0xffffffff).default(0),
    /** false: file order. */
    shuffle: z.boolean().default(true),
    /** Per-step log; default OUT/log.jsonl. */
    log: z.string().min(1).optional(),
    resume: z.boolean().default(false),
    /** Checkpoint every N steps (0: only at the end and when stopped). */
    saveEvery: int.nonnegative().default(100),
    threads: int.min(0).max(1024).default(0),
  };
}

export interface PlannedStep {
  epoch: number;
  /** Example indices per micro-batch. */
  micro: number[][];
}

function chunk<T>(a: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < a.length; i += n) out.push(a.slice(i, i + n));
  return out;
}

// Batches are grouped by length inside windows of this many steps: enough to pair similar lengths,
// few enough that a window is still a random draw from the data.
const GROUP_WINDOW_STEPS = 8;

/** The steps of one epoch: a function of (lengths, seed, epoch) only, so resume can replay it. */
export function planEpoch(
  lengths: readonly number[],
  epoch: number,
  o: { batchSize: number; gradAccum: number; seed: number; shuffle: boolean; groupByLength: boolean },
): number[][][] {
  const stepSize = o.batchSize * o.gradAccum;
  let order = Array.from({ length: lengths.length }, (_, i) => i);
  let steps: number[][];
  if (!o.shuffle) {
    steps = chunk(order, stepSize);
  } else {
    const next = rng(mixSeed(o.seed, epoch));
    shuffleInPlace(order, next);
    if (o.groupByLength && lengths.length > stepSize) {
      const window = stepSize * GROUP_WINDOW_STEPS;
      order = chunk(order, window).flatMap((w) => w.sort((a, b) => lengths[b] - lengths[a] || a - b));
      steps = shuffleInPlace(chunk(order, stepSize), next);
    } else {
      steps = chunk(order, stepSize);
    }
  }
  return steps.map((s) => chunk(s, o.batchSize));
}

/** Every step of the run: `steps` if given, else `epochs` passes over the data. */
export function planRun(
  lengths: readonly number[],
  o: { batchSize: number; gradAccum: number; seed: number; shuffle: boolean; groupByLength: boolean; epochs: number; steps?: number },
): PlannedStep[] {
  if (lengths.length === 0) return [];
  const perEpoch = Math.ceil(lengths.length / (o.batchSize * o.gradAccum));
  const total = o.steps ?? o.epochs * perEpoch;
  const out: PlannedStep[] = [];
  for (let e = 0; out.length < total; e++) for (const micro of planEpoch(lengths, e, o)) if (out.length < total) out.push({ epoch: e, micro });
  return out;
}


/** The first setting that differs between two run identities, said for a person; null when equal. */
export function firstDifference(a: unknown, b: unknown, path = ''): string | null {
  if (JSON.stringify(a) === JSON.stringify(b)) return null;
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
  }
  return `${path || '(settings)'}: the run has ${JSON.stringify(a)}, now ${JSON.stringify(b)}`;
}

/** Keeps the log lines of steps the checkpoint holds; later ones are about to be redone. */
export async function truncateLog(path: string, upToStep: number): Promise<void> {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => {
      if (l.trim() === '') return false;
      try {
        const j = JSON.parse(l) as { step?: unknown };
        return typeof j.step === 'number' && j.step <= upToStep;
      } catch {
        return false; // a line cut short by a crash
      }
    });
  await writeFileAtomic(path, kept.map((l) => l + '\n').join(''));
}



/** The files of a training run's output folder. */
export interface RunFolder {
  out: string;
  checkpoint: string;
  runFile: string;
  logPath: string;
}

/**
 * The run folder of a training command: refuses a file, and an existing run unless resume
 * (naming --resume); creates the folder.
 */
export function openRunFolder(o: { out: string; log?: string; resume: boolean }): RunFolder {
  const out = resolve(o.out);
  if (existsSync(out) && !statSync(out).isDirectory()) throw new InputError(`--out is a file, expected a folder: ${o.out}`);
  const f = {
    out,
    checkpoint: join(out, 'checkpoint.gguf'),
    runFile: join(out, 'run.json'),
    logPath: o.log ? (isAbsolute(o.log) ? o.log : resolve(o.log)) : join(out, 'log.jsonl'),
  };
  if (!o.resume && (existsSync(f.checkpoint) || existsSync(f.runFile)))
    throw new InputError(`${o.out} already holds a training run; pass --resume to continue it, or choose another --out`);
  mkdirSync(out, { recursive: true });
  return f;
}

/** Writes run.json for a new run, or checks a resumed one's identity against it, naming the first difference. */
/** The optimizer settings in a run identity (the same keys, in the same order, for every trainer). */
export function optimizerIdentity(o: { lr: number; weightDecay: number; batchSize: number; gradAccum: number; clip: number; schedule: string; warmup: number }) {
  return { lr: o.lr, weightDecay: o.weightDecay, batchSize: o.batchSize, gradAccum: o.gradAccum, clip: o.clip, schedule: o.schedule, warmup: o.warmup };
}

/** The base model of a training run (absolute), after checking it and the initial adapter exist. */
export function trainingBase(o: { base: string; initAdapter?: string }): string {
  const base = resolve(o.base);
  if (!existsSync(base) || !statSync(base).isFile()) throw new InputError(`--base: model file not found: ${o.base}`);
  if (o.initAdapter && !existsSync(o.initAdapter)) throw new InputError(`--init-adapter: file not found: ${o.initAdapter}`);
  return base;
}

/**
 * What both trainers open with: the base model (checked), the run folder, and a progress callback
 * that stamps each report with the time since the start.
 */
export function beginRun<P>(
  o: { base: string; initAdapter?: string; out: string; log?: string; resume: boolean },
  onProgress?: (p: P & { elapsedMs: number }) => void,
) {
  const base = trainingBase(o);
  const folder = openRunFolder(o);
  const t0 = Date.now();
  return { base, folder, t0, progress: (p: P) => onProgress?.({ ...p, elapsedMs: Date.now() - t0 }) };
}

/** The error a stopped run throws: where it stopped, and that a rerun with --resume continues it. */
export function stoppedError(step: number, totalSteps: number, out: string): Error & { step: number } {
  return Object.assign(abortError(), {
    message: step === 0 ? 'training stopped before the first step' : `training stopped after step ${step} of ${totalSteps}; the checkpoint in ${out} keeps it (rerun with --resume)`,
    step,
  });
}

/** The log.jsonl fields every trainer writes for a step (each adds its own after them). */
export function stepLogFields(r: { step: number; loss: number; gradNorm: number; clipCoef: number; lr: number; tokens: number }, epoch: number) {
  return { step: r.step, epoch, loss: r.loss, grad_norm: r.gradNorm, clip_coef: r.clipCoef, lr: r.lr, tokens: r.tokens };
}

/**
 * The progress report every trainer sends after a step: done steps of this run took trainMs, the
 * ETA assumes the rest take as long each.
 */
export function stepProgress(
  r: { step: number; loss: number; lr: number; gradNorm: number },
  run: { totalSteps: number; epoch: number; tokens: number; trainMs: number; done: number },
) {
  return {
    phase: 'train' as const,
    step: r.step,
    totalSteps: run.totalSteps,
    epoch: run.epoch,
    loss: r.loss,
    lr: r.lr,
    gradNorm: r.gradNorm,
    tokens: run.tokens,
    tokensPerSec: tokensPerSec(run.tokens, run.trainMs),
    etaMs: (run.trainMs / run.done) * (run.totalSteps - r.step),
  };
}

/** Tokens per second of training time (0 before any). */
export function tokensPerSec(tokens: number, trainMs: number): number {
  return trainMs ? tokens / (trainMs / 1000) : 0;
}

export async function checkRunIdentity(
  runFile: string,
  format: string,
  identity: unknown,
  extra: Record<string, unknown> = {},
  refusal: (difference: string) => string = (d) => `--resume: ${runFile} was written by a different run (${d}); use another --out`,
): Promise<void> {
  if (existsSync(runFile)) {
    let prev: { identity?: unknown };
    try {
      prev = JSON.parse(readFileSync(runFile, 'utf8')) as { identity?: unknown };
    } catch (e) {
      throw new InputError(`${runFile}: not valid JSON (${(e as Error).message})`);
    }
    const d = firstDifference(prev.identity, identity);
    if (d) throw new InputError(refusal(d));
    return;
  }
  await writeFileAtomic(runFile, JSON.stringify({ format, version: 1, createdAt: new Date().toISOString(), ...extra, identity }, null, 1) + '\n');
}

/**
 * Loads the checkpoint a resumed run left (checking that it sits on this run's plan) and trims the
 * log to its steps; returns the step to start from, or null for a fresh run.
 */
export async function resumeCheckpoint(
  tr: { loadCheckpoint(path: string): void; info(): { step: number; dataPosition: number } },
  f: RunFolder,
  plan: readonly PlannedStep[],
): Promise<number | null> {
  const consumed = [0];
  for (const s of plan) consumed.push(consumed[consumed.length - 1] + s.micro.reduce((a, m) => a + m.length, 0));
  if (existsSync(f.checkpoint)) {
    tr.loadCheckpoint(f.checkpoint);
    const ti = tr.info();
    if (ti.step > plan.length || ti.dataPosition !== consumed[ti.step])
      throw new InputError(
        `--resume: ${f.checkpoint} is at step ${ti.step} (data position ${ti.dataPosition}), which does not fit this run's plan of ${plan.length} steps`,
      );
    await truncateLog(f.logPath, ti.step);
    return ti.step;
  }
  if (existsSync(f.logPath)) await truncateLog(f.logPath, -1);
  return null;
}
