// Training a latent reasoner through its latent chain (CODI, Coconut, or the LM teacher task):
// reading problems, the seeded batch plan, the per-step log, checkpoints and a bit-identical
// resume, the step-0 gradient dump, and the outputs. Every number on weights or activations
// (losses, gradients, clipping, AdamW, the schedule) comes from the engine.
//
// Output folder:
//   run.json          the run's identity (model / head / data hashes, settings); resume refuses another
//   checkpoint.gguf   the latest checkpoint (weights, AdamW moments, step, data position), atomic
//   log.jsonl         per step {step, epoch, loss, ce, distill, ref_ce, [latent_ce], grad_norm, clip_coef, lr, tokens, time_s}
//   model.gguf        full mode: the trained model (f32)
//   adapter.gguf      lora mode: the trained LoRA (llama.cpp format; load it with the base model)
//   model.latent.gguf the latent head sidecar (trained prj for CODI)
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { appendFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { InputError } from '../core/errors.js';
import { latentIds, problemFromLine, type LatentIdsOptions, type LatentProblem } from './latent-data.js';
import { LatentHead } from '../reasoning/latent-head.js';
import { loadModel, type Model } from '../engine/model.js';
import { native, type NativeLatentExample, type NativeLatentStepResult, type NativeLatentTrainer } from '../core/native.js';
import { parseOptions } from '../core/options.js';
import { writeSafetensors } from '../core/safetensors.js';
import { contentHash } from '../core/content-hash.js';
import { beginRun, stepLogFields, stepProgress, checkRunIdentity, optimizerIdentity, planRun, resumeCheckpoint, stoppedError, tokensPerSec, trainingRunFields } from './train-run.js';

const int = z.number().int();

export const TrainLatentOptionsSchema = z
  .object({
    /** Model GGUF: the base (lora mode) or the model to train (full mode). */
    base: z.string().min(1),
    /** Latent-head sidecar; default <base>.latent.gguf or the model file's own. */
    latentHead: z.string().min(1).optional(),
    /** lora mode: start from this llama.cpp GGUF adapter (convert <codi-dir> --no-merge writes one). */
    initAdapter: z.string().min(1).optional(),
    data: z.string().min(1),
    out: z.string().min(1),
    objective: z.enum(['codi', 'coconut', 'lm']).default('codi'),
    /** Coconut: the curriculum stage s. */
    stage: int.min(0).max(64).default(1),
    /** Coconut: latent steps per replaced CoT step (Coconut's c); the stage feeds s x c. */
    latentsPerStep: int.min(1).max(16).default(1),
    mode: z.enum(['lora', 'full']).default('lora'),
    /** CODI: latent steps (default: the head's). */
    latentSteps: int.min(0).max(64).optional(),
    distillFactor: z.number().min(0).finite().default(1),
    refFactor: z.number().min(0).finite().default(1),
    /** Also supervise " The answer is:" after eot (the model then writes it itself). */
    supervisePrompt: z.boolean().default(false),
    /** Coconut: latent step k's source row also predicts step k's result (see latent-data.ts). */
    latentTargets: z.boolean().default(false),
    /** Weight of that latent-target CE. */
    latentFactor: z.number().min(0).finite().default(1),
    /** With latentTargets: the latent before each step's last predicts the step's last operand (see latent-data.ts). */
    operandTargets: z.boolean().default(false),
    trainHead: z.boolean().default(true),
    loraR: int.positive().max(4096).default(16),
    loraAlpha: z.number().positive().finite().default(32),
    ...trainingRunFields({ lr: 1e-4, batchSize: 8, warmup: 0 }),
    /** First N problems of the data only. */
    limit: int.positive().optional(),
    /** Writes DIR/step0.safetensors: every trainable tensor's step-0 gradient before clipping. */
    dumpGrads: z.string().min(1).optional(),
    /** Name written into the outputs' general.name. */
    name: z.string().min(1).optional(),
    /** Extra string metadata for the trained model file (full mode). */
    metadata: z.record(z.string()).optional(),
  })
  .strict();
export type TrainLatentOptions = z.input<typeof TrainLatentOptionsSchema>;
type Resolved = z.output<typeof TrainLatentOptionsSchema>;

export interface TrainLatentProgress {
  phase: 'prepare' | 'train' | 'save';
  step: number;
  totalSteps: number;
  epoch: number;
  loss?: number;
  ce?: number;
  distill?: number;
  refCe?: number;
  latentCe?: number;
  lr?: number;
  gradNorm?: number;
  tokens: number;
  tokensPerSec: number;
  elapsedMs: number;
  etaMs: number | null;
}

export interface TrainLatentSummary {
  out: string;
  steps: number;
  totalSteps: number;
  resumedFrom: number | null;
  examples: number;
  loss: number | null;
  tokens: number;
  tokensPerSec: number;
  elapsedMs: number;
  trainableParams: number;
  checkpoint: string;
  log: string;
  model?: string;
  adapter?: string;
  head?: string;
  grads?: string;
}

export interface TrainLatentCallbacks {
  onProgress?: (p: TrainLatentProgress) => void;
  /** Stops after the step in flight; the finished steps are checkpointed first. */
  signal?: AbortSignal;
}

/** Problems of a JSONL file; every error names the file and line. */
export function readProblems(path: string, limit = Infinity): LatentProblem[] {
  if (!existsSync(path)) throw new InputError(`data file not found: ${path}`);
  const out: LatentProblem[] = [];
  const lines = readFileSync(path, 'utf8').split('\n');
  for (let i = 0; i < lines.length && out.length < limit; i++) {
    const text = lines[i].trim();
    if (text === '') continue;
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch (e) {
      throw new InputError(`${path}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new InputError(`${path}:${i + 1}: expected a JSON object`);
    try {
      out.push(problemFromLine(j as Record<string, unknown>));
    } catch (e) {
      throw new InputError(`${path}:${i + 1}: ${(e as Error).message}`);
    }
  }
  if (out.length === 0) throw new InputError(`${path}: no problems`);
  return out;
}

/** Ids of every problem for the run's objective. */
export function buildLatentExamples(model: Model, head: LatentHead | null, problems: LatentProblem[], o: LatentIdsOptions): NativeLatentExample[] {
  return problems.map((p, i) => {
    try {
      return latentIds(model, head?.settings ?? null, p, o);
    } catch (e) {
      throw new InputError(`problem ${i}: ${(e as Error).message}`);
    }
  });
}

function exampleLength(e: NativeLatentExample): number {
  return (e.prompt?.length ?? 0) + (e.suffix?.length ?? 0) + (e.teacher?.length ?? 0);
}

/**
 * Trains through the latent chain. Resumable: with resume, a run continues from OUT/checkpoint.gguf
 * and ends with the same files, bit for bit, as an uninterrupted run.
 */
export async function trainLatent(options: TrainLatentOptions, callbacks: TrainLatentCallbacks = {}): Promise<TrainLatentSummary> {
  const o: Resolved = parseOptions(TrainLatentOptionsSchema, options, 'train-latent options');
  const { onProgress, signal } = callbacks;
  if (o.initAdapter && o.mode !== 'lora') throw new InputError('--init-adapter needs --mode lora');
  const { base, folder, t0, progress } = beginRun<Omit<TrainLatentProgress, 'elapsedMs'>>(o, onProgress);
  const { out, checkpoint, runFile, logPath } = folder;
  const model = await loadModel(base);
  let trainer: NativeLatentTrainer | undefined;
  try {
    const head = LatentHead.find(model, o.latentHead);
    if (o.objective === 'codi' && head?.settings.mode !== 'codi')
      throw new InputError(`--objective codi needs a CODI latent head (${o.latentHead ?? base.replace(/\.gguf$/i, '') + '.latent.gguf'} not found or not CODI)`);
    if (o.latentTargets && o.objective !== 'coconut') throw new InputError('--latent-targets needs --objective coconut');
    if (o.operandTargets && !(o.latentTargets && o.latentsPerStep >= 2)) throw new InputError('--operand-targets needs --latent-targets and --latents-per-step 2 or more');
    if (o.objective !== 'lm' && !head)
      throw new InputError(`--objective ${o.objective} needs a latent head for its bot / eot ids (give --latent-head)`);
    progress({ phase: 'prepare', step: 0, totalSteps: 0, epoch: 0, tokens: 0, tokensPerSec: 0, etaMs: null });
    const problems = readProblems(o.data, o.limit);
    const examples = buildLatentExamples(model, head, problems, o);
    const latentSteps = o.objective === 'coconut' ? o.stage * o.latentsPerStep : (o.latentSteps ?? head?.settings.steps ?? 6);
    const plan = planRun(examples.map(exampleLength), { ...o, groupByLength: false });
    const totalSteps = plan.length;

    const identity = {
      base: { sha256: await contentHash(base), bytes: statSync(base).size },
      head: head ? { sha256: await contentHash(head.settings.path) } : null,
      initAdapter: o.initAdapter ? { sha256: await contentHash(o.initAdapter) } : null,
      data: { sha256: await contentHash(o.data), problems: problems.length },
      objective: o.objective,
      stage: o.objective === 'coconut' ? o.stage : null,
      ...(o.latentsPerStep !== 1 ? { latentsPerStep: o.latentsPerStep } : {}),
      mode: o.mode,
      latentSteps,
      distillFactor: o.distillFactor,
      refFactor: o.refFactor,
      supervisePrompt: o.supervisePrompt,
      ...(o.latentTargets ? { latentTargets: { factor: o.latentFactor, ...(o.operandTargets ? { operands: true } : {}) } } : {}),
      trainHead: o.trainHead,
      lora: o.mode === 'lora' && !o.initAdapter ? { r: o.loraR, alpha: o.loraAlpha } : null,
      ...optimizerIdentity(o),
      totalSteps,
      seed: o.seed,
      shuffle: o.shuffle,
    };
    await checkRunIdentity(runFile, 'lro-latent-run', identity, { paths: { base, data: resolve(o.data) } });

    trainer = new (native().NativeLatentTrainer)(
      model.nativeHandle,
      head ? head.settings.path : null,
      {
        objective: o.objective,
        mode: o.mode,
        latentSteps,
        distillFactor: o.distillFactor,
        refFactor: o.refFactor,
        latentFactor: o.latentFactor,
        trainHead: o.trainHead,
        threads: o.threads,
        rank: o.loraR,
        alpha: o.loraAlpha,
        initSeed: o.seed,
        initAdapter: o.initAdapter ? resolve(o.initAdapter) : undefined,
      },
      { lr: o.lr, weightDecay: o.weightDecay, maxGradNorm: o.clip, schedule: o.schedule, warmupFraction: o.warmup, totalSteps },
    );
    const tr = trainer;
    if (o.dumpGrads) tr.keepPreclipGradients(true);

    const resumedFrom = await resumeCheckpoint(tr, folder, plan);
    const start = resumedFrom ?? 0;

    let tokens = 0;
    let trainMs = 0;
    let last: NativeLatentStepResult | undefined;
    const log = (line: Record<string, unknown>) => appendFile(logPath, JSON.stringify(line) + '\n');
    const save = (step: number) => {
      progress({ phase: 'save', step, totalSteps, epoch: plan[Math.max(0, step - 1)]?.epoch ?? 0, tokens, tokensPerSec: tokensPerSec(tokens, trainMs), etaMs: null });
      tr.saveCheckpoint(checkpoint);
    };
    const stopped = (s: number) => stoppedError(s, totalSteps, o.out);
    let grads: string | undefined;
    for (let s = start; s < totalSteps; s++) {
      if (signal?.aborted) {
        if (s > start) save(s);
        throw stopped(s);
      }
      const { epoch, micro } = plan[s];
      const flat = micro.flat();
      const local = new Map(flat.map((g, i) => [g, i]));
      const t = Date.now();
      const r = await tr.step(
        flat.map((g) => examples[g]),
        micro.map((m) => m.map((g) => local.get(g)!)),
      );
      trainMs += Date.now() - t;
      tokens += r.tokens;
      last = r;
      if (s === 0 && o.dumpGrads) {
        mkdirSync(o.dumpGrads, { recursive: true });
        grads = join(resolve(o.dumpGrads), 'step0.safetensors');
        await writeSafetensors(
          grads,
          tr.gradients().map((g) => ({ name: g.name, dtype: 'F32' as const, shape: g.shape, data: new Uint8Array(g.data.buffer, g.data.byteOffset, g.data.byteLength) })),
        );
        tr.keepPreclipGradients(false);
      }
      await log({
        ...stepLogFields(r, epoch),
        ce: r.ce,
        distill: r.distill,
        ref_ce: r.refCe,
        ...(o.latentTargets ? { latent_ce: r.latentCe } : {}),
        time_s: (Date.now() - t) / 1000,
      });
      progress({
        ...stepProgress(r, { totalSteps, epoch, tokens, trainMs, done: s + 1 - start }),
        ce: r.ce,
        distill: r.distill,
        refCe: r.refCe,
        latentCe: o.latentTargets ? r.latentCe : undefined,
      });
      if (o.saveEvery > 0 && r.step % o.saveEvery === 0 && r.step !== totalSteps) save(r.step);
    }
    save(totalSteps);
    if (signal?.aborted) throw stopped(totalSteps);

    // Outputs under temp names, then renamed: each file is either absent or whole.
    progress({ phase: 'save', step: totalSteps, totalSteps, epoch: plan[totalSteps - 1]?.epoch ?? 0, tokens, tokensPerSec: tokensPerSec(tokens, trainMs), etaMs: 0 });
    const name = o.name ?? `${model.info.name} (${o.objective}, ${o.mode})`;
    const summary: TrainLatentSummary = {
      out,
      steps: tr.info().step,
      totalSteps,
      resumedFrom,
      examples: examples.length,
      loss: last?.loss ?? null,
      tokens,
      tokensPerSec: tokensPerSec(tokens, trainMs),
      elapsedMs: Date.now() - t0,
      trainableParams: tr.info().trainableParams,
      checkpoint,
      log: logPath,
      ...(grads ? { grads } : {}),
    };
    const place = async (file: string, write: (tmp: string) => void) => {
      const tmp = join(out, `.${file}.tmp-${process.pid}`);
      try {
        write(tmp);
        await rename(tmp, join(out, file));
      } finally {
        await rm(tmp, { force: true });
      }
      return join(out, file);
    };
    if (o.mode === 'full') summary.model = await place('model.gguf', (p) => tr.saveModel(p, name, o.metadata));
    else summary.adapter = await place('adapter.gguf', (p) => tr.saveModel(p, name));
    if (head) summary.head = await place('model.latent.gguf', (p) => tr.saveHead(p));
    return summary;
  } finally {
    trainer?.dispose();
    model.dispose();
  }
}
