// Activation-oracle LoRA training: the data pipeline and run bookkeeping around the native trainer.
// Here: reading and checking examples, the seeded, length-grouped batch plan, epochs and steps,
// validation at intervals, the per-step log, checkpoints, resume, and writing the adapter as a
// llama.cpp GGUF and a PEFT folder. Every number computed on activations or weights (losses,
// gradients, AdamW, clipping, the LR schedule, injection) comes from the engine.
//
// Output folder:
//   run.json         the settings and data fingerprint of the run (resume refuses a mismatch)
//   checkpoint.gguf  the latest checkpoint (A/B, AdamW moments, step, data position), atomic
//   log.jsonl        one line per step {step, epoch, loss, lr, grad_norm, tokens, ...}; val lines {step, val_loss}
//   adapter.gguf     the final adapter (llama.cpp format)         (--format gguf)
//   peft/            the final adapter as a PEFT folder           (--format peft)
//   oracle.json      injection settings for inference (also inside peft/)
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { appendFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { convertAdapter } from '../engine/convert.js';
import { InputError } from '../core/errors.js';
import { loadModel, type Model } from '../engine/model.js';
import { native, type NativeStepResult, type NativeTrainer, type NativeTrainExample } from '../core/native.js';
import { ORACLE_SETTINGS_FILE, type OracleSettings } from './oracle-common.js';
import { writeFileAtomic } from '../core/atomic-file.js';
import { buildOracleInput, readOracleLines, VectorStore, type OracleExample } from './oracle-data.js';
import { parseOptions } from '../core/options.js';
import { contentHash } from '../core/content-hash.js';
import { beginRun, stepLogFields, stepProgress, checkRunIdentity, optimizerIdentity, planRun, resumeCheckpoint, stoppedError, tokensPerSec, trainingRunFields } from '../training/train-run.js';

export { planEpoch, planRun, type PlannedStep } from '../training/train-run.js';

export const LORA_TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
const PEFT_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export const ADAPTER_FORMATS = ['gguf', 'peft'] as const;

const int = z.number().int();

export const TrainOracleOptionsSchema = z
  .object({
    /** Base model GGUF (any weight type; quantised bases train QLoRA-style). */
    base: z.string().min(1),
    /** Training examples, JSONL (lib/oracle/oracle-data.ts). */
    data: z.string().min(1),
    val: z.string().min(1).optional(),
    out: z.string().min(1),
    /** Start from this adapter (PEFT folder or llama.cpp GGUF); its rank, alpha and targets win over lora*. */
    initAdapter: z.string().min(1).optional(),
    loraR: int.positive().max(4096).default(64),
    loraAlpha: z.number().positive().finite().default(128),
    rslora: z.boolean().default(false),
    loraDropout: z.number().min(0).max(0.99).default(0),
    targets: z.union([z.literal('all'), z.array(z.enum([...LORA_TARGETS, ...PEFT_TARGETS])).min(1)]).default('all'),
    ...trainingRunFields({ lr: 1e-5, batchSize: 16, warmup: 0.1 }),
    injectLayer: int.min(-1).default(1),
    injectCoef: z.number().positive().finite().default(1),
    /** Batches of similar lengths (within shuffled groups of 8 steps), so packed passes waste less; off without shuffle. */
    groupByLength: z.boolean().default(true),
    format: z.array(z.enum(ADAPTER_FORMATS)).min(1).default(['gguf', 'peft']),
    /** Validation loss every N steps (0: only at the end); needs val. */
    evalEvery: int.nonnegative().default(100),
    /** Recompute each block in backward instead of storing activations (less memory, ~1.3x time). */
    recompute: z.boolean().default(false),
    /** Examples of a micro-batch share one forward pass up to this many tokens. */
    packTokens: int.nonnegative().default(4096),
  })
  .strict();
export type TrainOracleOptions = z.input<typeof TrainOracleOptionsSchema>;
type Resolved = z.output<typeof TrainOracleOptionsSchema>;

export interface TrainOracleProgress {
  phase: 'prepare' | 'train' | 'validate' | 'save';
  /** Optimizer steps done. */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Latest step's batch loss (before its update). */
  loss?: number;
  lr?: number;
  gradNorm?: number;
  valLoss?: number;
  /** Tokens trained on in this process (resumed steps excluded). */
  tokens: number;
  tokensPerSec: number;
  elapsedMs: number;
  /** null until a step has been timed. */
  etaMs: number | null;
  /** prepare phase: examples read so far. */
  examples?: number;
}

export interface TrainOracleSummary {
  out: string;
  steps: number;
  totalSteps: number;
  epochs: number;
  /** Step the run continued from; null for a fresh run. */
  resumedFrom: number | null;
  trainExamples: number;
  valExamples: number;
  loss: number | null;
  valLoss: number | null;
  tokens: number;
  tokensPerSec: number;
  elapsedMs: number;
  rank: number;
  alpha: number;
  targets: string[];
  trainableParams: number;
  checkpoint: string;
  log: string;
  adapter: { gguf?: string; peft?: string };
}

export interface TrainOracleCallbacks {
  onProgress?: (p: TrainOracleProgress) => void;
  /** Stops after the step in flight; a checkpoint of the finished steps is written first. */
  signal?: AbortSignal;
}

/**
 * One prepared example: ids and placeholder rows. Inline vectors are kept as f32 (not as the
 * parsed JSON numbers, 4x the memory); referenced ones are read when the example's batch comes up.
 */
interface Prepared {
  ex: Pick<OracleExample, 'id' | 'vectors'>;
  inline: Float32Array | null;
  where: string;
  tokens: Int32Array;
  lossMask: Uint8Array;
  positions: Int32Array;
}

/** Reads, checks and tokenizes a JSONL file; every error names the file and line. */
async function prepareExamples(
  model: Model,
  path: string,
  onCount?: (n: number) => void,
): Promise<Prepared[]> {
  if (!existsSync(path)) throw new InputError(`examples file not found: ${path}`);
  const store = new VectorStore(path);
  const out: Prepared[] = [];
  const seen = new Map<string, number>();
  const width = model.info.nEmbd;
  for await (const { example: ex, line } of readOracleLines(path)) {
    const where = `${path}:${line}`;
    if (seen.has(ex.id)) throw new InputError(`${where}: field 'id': "${ex.id}" is already used on line ${seen.get(ex.id)}`);
    seen.set(ex.id, line);
    let input;
    try {
      await store.check(ex, width);
      input = buildOracleInput(model, ex);
    } catch (e) {
      throw new InputError(`${where}: ${(e as Error).message}`);
    }
    const inline = Array.isArray(ex.vectors) ? await store.load(ex, width) : null;
    out.push({
      ex: { id: ex.id, vectors: inline ? [] : ex.vectors },
      inline,
      where,
      tokens: Int32Array.from(input.ids),
      lossMask: Uint8Array.from(input.lossMask, (b) => (b ? 1 : 0)),
      positions: Int32Array.from(input.positions),
    });
    if (out.length % 256 === 0) onCount?.(out.length);
  }
  if (out.length === 0) throw new InputError(`${path}: no examples`);
  return out;
}

async function nativeExamples(items: Prepared[], store: VectorStore, width: number): Promise<NativeTrainExample[]> {
  return Promise.all(
    items.map(async (p) => {
      let vectors: Float32Array;
      try {
        vectors = p.inline ?? (await store.load(p.ex, width));
      } catch (e) {
        throw new InputError(`${p.where}: ${(e as Error).message}`);
      }
      return { tokens: p.tokens, lossMask: p.lossMask, injectPositions: p.positions, vectors };
    }),
  );
}

/** Settings that decide the run's numbers; resume refuses to continue a run whose settings differ. */
// By content, so that a resume survives moving the files and refuses a same-size other model.
function runIdentity(o: Resolved, hashes: { base: string; data: string; val: string | null; initAdapter: string | null }, base: string, nTrain: number, totalSteps: number) {
  return {
    base: { sha256: hashes.base, bytes: statSync(base).size },
    data: { sha256: hashes.data, examples: nTrain },
    val: o.val ? { sha256: hashes.val } : null,
    initAdapter: hashes.initAdapter,
    loraR: o.loraR,
    loraAlpha: o.loraAlpha,
    rslora: o.rslora,
    loraDropout: o.loraDropout,
    targets: o.targets,
    ...optimizerIdentity(o),
    totalSteps,
    injectLayer: o.injectLayer,
    injectCoef: o.injectCoef,
    seed: o.seed,
    shuffle: o.shuffle,
    groupByLength: o.groupByLength,
    packTokens: o.packTokens,
    recompute: o.recompute,
  };
}

/**
 * Trains an activation-oracle LoRA on a frozen base. Resumable: with resume, a run continues from
 * OUT/checkpoint.gguf and ends with the same adapter, bit for bit, as an uninterrupted run.
 */
export async function trainOracle(options: TrainOracleOptions, callbacks: TrainOracleCallbacks = {}): Promise<TrainOracleSummary> {
  const o = parseOptions(TrainOracleOptionsSchema, options, 'train-oracle options');
  const { onProgress, signal } = callbacks;
  const { base, folder, t0, progress } = beginRun<Omit<TrainOracleProgress, 'elapsedMs'>>(o, onProgress);
  const { out, checkpoint, runFile, logPath } = folder;
  const model = await loadModel(base);
  let trainer: NativeTrainer | undefined;
  try {
    const info = model.info;
    if (o.injectLayer >= info.nLayer)
      throw new InputError(`--inject-layer ${o.injectLayer} is outside the model's blocks -1..${info.nLayer - 1}`);
    progress({ phase: 'prepare', step: 0, totalSteps: 0, epoch: 0, tokens: 0, tokensPerSec: 0, etaMs: null, examples: 0 });
    const train = await prepareExamples(model, o.data, (n) =>
      progress({ phase: 'prepare', step: 0, totalSteps: 0, epoch: 0, tokens: 0, tokensPerSec: 0, etaMs: null, examples: n }),
    );
    const val = o.val ? await prepareExamples(model, o.val) : [];
    const plan = planRun(
      train.map((p) => p.tokens.length),
      o,
    );
    const totalSteps = plan.length;
    const hashes = {
      base: await contentHash(base),
      data: await contentHash(o.data),
      val: o.val ? await contentHash(o.val) : null,
      initAdapter: o.initAdapter ? await contentHash(o.initAdapter) : null,
    };
    const identity = runIdentity(o, hashes, base, train.length, totalSteps);

    await checkRunIdentity(runFile, 'lro-oracle-run', identity, { paths: { base, data: resolve(o.data), val: o.val ? resolve(o.val) : null } });

    trainer = new (native().NativeTrainer)(
      model.nativeHandle,
      {
        rank: o.loraR,
        alpha: o.loraAlpha,
        rslora: o.rslora,
        dropout: o.loraDropout,
        targets: o.targets === 'all' ? undefined : o.targets,
        initSeed: o.seed,
        initAdapter: o.initAdapter,
      },
      {
        lr: o.lr,
        weightDecay: o.weightDecay,
        maxGradNorm: o.clip,
        schedule: o.schedule,
        warmupFraction: o.warmup,
        totalSteps,
      },
      { injectLayer: o.injectLayer, injectCoef: o.injectCoef, recompute: o.recompute, packTokens: o.packTokens, threads: o.threads, seed: o.seed },
    );
    const tr = trainer;

    // Examples consumed before each step: the checkpoint's data position must match the plan.
    const resumedFrom = await resumeCheckpoint(tr, folder, plan);
    const start = resumedFrom ?? 0;

    const store = new VectorStore(o.data);
    const valStore = o.val ? new VectorStore(o.val) : undefined;
    const width = info.nEmbd;
    let tokens = 0;
    let trainMs = 0;
    let last: NativeStepResult | undefined;
    let lastVal: number | null = null;
    const log = (line: Record<string, unknown>) => appendFile(logPath, JSON.stringify(line) + '\n');

    // null when stopped part-way: nothing is logged, and the caller's next stop check saves.
    const validate = async (step: number): Promise<number | null> => {
      // Chunks keep memory flat and let a stop land between them; the pooled mean is rebuilt from
      // each chunk's mean weighted by its loss tokens (the engine's own pooling across passes).
      const chunkSize = Math.max(1, o.batchSize * o.gradAccum);
      let sum = 0;
      let n = 0;
      for (let i = 0; i < val.length; i += chunkSize) {
        if (signal?.aborted) return null;
        const part = val.slice(i, i + chunkSize);
        const lossTokens = part.reduce((a, p) => a + p.lossMask.reduce((x, y) => x + y, 0) - p.lossMask[0], 0);
        if (lossTokens === 0) continue;
        sum += (await tr.evalLoss(await nativeExamples(part, valStore!, width))) * lossTokens;
        n += lossTokens;
        progress({ phase: 'validate', step, totalSteps, epoch: plan[Math.max(0, step - 1)]?.epoch ?? 0, tokens, tokensPerSec: tokensPerSec(tokens, trainMs), etaMs: null });
      }
      const v = n ? sum / n : NaN;
      await log({ step, val_loss: v });
      return v;
    };

    const save = async (step: number) => {
      progress({ phase: 'save', step, totalSteps, epoch: plan[Math.max(0, step - 1)]?.epoch ?? 0, tokens, tokensPerSec: tokensPerSec(tokens, trainMs), etaMs: null });
      tr.saveCheckpoint(checkpoint);
    };

    const stopped = (s: number) => stoppedError(s, totalSteps, o.out);
    // The untrained adapter's validation loss: the baseline the later ones are read against.
    if (val.length && start === 0 && o.evalEvery > 0) lastVal = await validate(0);
    for (let s = start; s < totalSteps; s++) {
      if (signal?.aborted) {
        if (s > start) await save(s);
        throw stopped(s);
      }
      const { epoch, micro } = plan[s];
      const flat = micro.flat();
      const local = new Map(flat.map((g, i) => [g, i]));
      const examples = await nativeExamples(
        flat.map((g) => train[g]),
        store,
        width,
      );
      const t = Date.now();
      const r = await tr.step(
        examples,
        micro.map((m) => m.map((g) => local.get(g)!)),
      );
      trainMs += Date.now() - t;
      tokens += r.tokens;
      last = r;
      await log({
        ...stepLogFields(r, epoch),
        loss_tokens: r.lossTokens,
        micro_losses: r.microLosses,
        time_s: (Date.now() - t) / 1000,
      });
      progress({
        ...stepProgress(r, { totalSteps, epoch, tokens, trainMs, done: s + 1 - start }),
        ...(lastVal !== null ? { valLoss: lastVal } : {}),
      });
      const isLast = r.step === totalSteps;
      if (val.length && o.evalEvery > 0 && r.step % o.evalEvery === 0 && !isLast) lastVal = (await validate(r.step)) ?? lastVal;
      if (o.saveEvery > 0 && r.step % o.saveEvery === 0 && !isLast) await save(r.step);
    }

    await save(totalSteps);
    if (val.length) {
      const v = await validate(totalSteps);
      // The steps are all saved; a rerun with resume only redoes this validation and the outputs.
      if (v === null) throw stopped(totalSteps);
      lastVal = v;
    }
    if (signal?.aborted) throw stopped(totalSteps);

    // Final adapter files: GGUF first (the PEFT folder is converted from it).
    progress({ phase: 'save', step: totalSteps, totalSteps, epoch: plan[totalSteps - 1]?.epoch ?? 0, tokens, tokensPerSec: tokensPerSec(tokens, trainMs), etaMs: 0 });
    const ti = tr.info();
    const settings: OracleSettings = {
      format: 'lro-oracle',
      version: 1,
      injectLayer: o.injectLayer,
      injectCoef: o.injectCoef,
      base: { path: base, name: info.name, nEmbd: info.nEmbd, nLayer: info.nLayer },
      lora: { rank: ti.rank, alpha: ti.alpha, rslora: ti.rslora, targets: ti.targets },
      steps: ti.step,
      data: resolve(o.data),
    };
    const settingsText = JSON.stringify(settings, null, 1) + '\n';
    const adapter: TrainOracleSummary['adapter'] = {};
    const gguf = join(out, 'adapter.gguf');
    // Written under a temp name and renamed, so adapter.gguf is either absent or whole.
    const ggufTmp = join(out, `adapter.tmp-${process.pid}.gguf`);
    tr.saveAdapter(ggufTmp, `lro oracle (${info.name})`);
    try {
      if (o.format.includes('peft')) {
        const peft = join(out, 'peft');
        await rm(peft, { recursive: true, force: true });
        mkdirSync(peft, { recursive: true });
        await convertAdapter(ggufTmp, peft, { baseConfig: base });
        await writeFileAtomic(join(peft, ORACLE_SETTINGS_FILE), settingsText);
        adapter.peft = peft;
      }
      if (o.format.includes('gguf')) {
        await rename(ggufTmp, gguf);
        adapter.gguf = gguf;
      }
    } finally {
      await rm(ggufTmp, { force: true });
    }
    await writeFileAtomic(join(out, ORACLE_SETTINGS_FILE), settingsText);

    return {
      out,
      steps: ti.step,
      totalSteps,
      epochs: (plan[totalSteps - 1]?.epoch ?? 0) + 1,
      resumedFrom,
      trainExamples: train.length,
      valExamples: val.length,
      loss: last?.loss ?? null,
      valLoss: lastVal,
      tokens,
      tokensPerSec: tokensPerSec(tokens, trainMs),
      elapsedMs: Date.now() - t0,
      rank: ti.rank,
      alpha: ti.alpha,
      targets: ti.targets,
      trainableParams: ti.trainableParams,
      checkpoint,
      log: logPath,
      adapter,
    };
  } finally {
    trainer?.dispose();
    model.dispose();
  }
}
