// Library entry points of latent reasoning: one question (reason) or a stream of records
// (reasonStream). They find the model's latent head, make or reuse a session and run the
// Reasoner; the Reasoner holds the loop itself.
import { z } from 'zod';
import { goldAnswer } from '../core/answers.js';
import { abortError, InputError } from '../core/errors.js';
import { LatentHead } from './latent-head.js';
import { Model } from '../engine/model.js';
import { native } from '../core/native.js';
import { parseOptions } from '../core/options.js';
import { Reasoner, type ReasonOptions, type ReasonResult } from './reasoner.js';
import { type Session } from '../engine/session.js';

/** One record to run: a question (or token ids) and its reference answer. */
export interface CaptureRecord {
  /** Unique within a capture folder; resume skips ids already in the manifest. */
  id: string;
  text?: string;
  /** Token ids; when absent, text is tokenized with the capture's addBos / parseSpecial. */
  tokens?: readonly number[];
  /** Reference answer (GSM8K: the worked solution ending in "#### X"); kept as the gold answer. */
  answer?: string;
}

export const POSITION_KINDS = ['prompt', 'bot', 'latent', 'eot', 'answer'] as const;

export interface ReasonCallOptions extends ReasonOptions {
  /** A latent-head sidecar path or a loaded head; default: LatentHead.find(model) (sidecar beside the model, else inside it). */
  latentHead?: string | LatentHead;
  /** Session to run in (its caches are cleared first); default: a new one, disposed afterwards. */
  session?: Session;
  /** Threads of a new session (0: physical cores). */
  threads?: number;
  kvType?: 'f32' | 'f16';
}

// The plain-data part of the options; vectors, heads, sessions and signals pass through unchecked.
const ReasonScalarsSchema = z
  .object({
    latentSteps: z.number().int().min(0).max(4096).optional(),
    format: z.enum(['codi-answer-only', 'codi', 'plain']).optional(),
    maxAnswerTokens: z.number().int().min(0).max(1 << 20).optional(),
    temperature: z.number().min(0).optional(),
    seed: z.number().int().min(0).optional(),
    topK: z.number().int().min(0).optional(),
    topP: z.number().gt(0).max(1).optional(),
    earlyDecode: z.boolean().optional(),
    ablations: z.array(z.enum(['zero', 'skip', 'noise'])).optional(),
    noiseScale: z.number().min(0).finite().optional(),
    noReasoning: z.boolean().optional(),
    lensTopK: z.number().int().min(1).max(1 << 20).optional(),
    capture: z.array(z.string().min(1)).optional(),
    capturePositions: z.array(z.union([z.enum(POSITION_KINDS), z.number().int().min(0)])).optional(),
    threads: z.number().int().min(0).max(1024).optional(),
    kvType: z.enum(['f32', 'f16']).optional(),
  })
  .passthrough();

/** The context a reasoning session allows one sequence: the model's training context. */
export function reasoningContext(model: Model): number {
  return Math.min(Math.max(model.info.nCtxTrain, 1), 1 << 20);
}

/** The head beside or inside the model, or null when it has none; an unreadable sidecar is an InputError. */
export function findLatentHead(model: Model): LatentHead | null {
  try {
    return LatentHead.find(model);
  } catch (e) {
    throw new InputError(`latent head: ${(e as Error).message}`);
  }
}

/**
 * The model's latent head: the given sidecar, else `<model>.latent.gguf` beside it, else one
 * inside the model file. Errors (missing, unreadable, or no head at all) are InputErrors.
 */
export function requireLatentHead(model: Model, head?: string | LatentHead): LatentHead {
  if (head instanceof LatentHead) return head;
  let found: LatentHead | null;
  try {
    found = LatentHead.find(model, head);
  } catch (e) {
    throw new InputError(`latent head: ${(e as Error).message}`);
  }
  if (!found) {
    const sidecar = model.info.path.replace(/\.gguf$/i, '') + '.latent.gguf';
    throw new InputError(
      `${model.info.path} has no latent head (no sidecar ${sidecar}, none inside the model); give the sidecar (--latent-head FILE), or convert the checkpoint with its CODI projection`,
    );
  }
  return found;
}

function splitOptions(options: ReasonCallOptions): { call: Pick<ReasonCallOptions, 'latentHead' | 'session' | 'threads' | 'kvType'>; run: ReasonOptions } {
  parseOptions(ReasonScalarsSchema, options, 'reason options');
  const { latentHead, session, threads, kvType, ...run } = options;
  return { call: { latentHead, session, threads, kvType }, run };
}

/**
 * Runs the latent reasoning loop on one question (text in the head's prompt format, or prompt
 * ids as {tokens}) and returns the answer, the per-step records (logit lens, norms, drift),
 * early decodes, ablation branches and the requested captures (Float32Arrays).
 */
export async function reason(model: Model, prompt: string | { tokens: number[] }, options: ReasonCallOptions = {}): Promise<ReasonResult> {
  const { call, run } = splitOptions(options);
  const head = requireLatentHead(model, call.latentHead);
  const session = call.session ?? model.createSession({ nCtx: reasoningContext(model), threads: call.threads ?? 0, kvType: call.kvType ?? 'f32' });
  try {
    return await new Reasoner(model, head, session).reason(prompt, run);
  } finally {
    if (!call.session) session.dispose();
  }
}

// Model.reason: the latent loop attached to the model class here, so that model.ts, which every
// file uses, imports nothing of the reasoning side (no import cycle).
declare module '../engine/model.js' {
  interface Model {
    /**
     * Latent reasoning on one question (see reason() above): finds the latent head (a sidecar
     * beside the model, inside it, or options.latentHead) and runs in options.session or a new session.
     */
    reason(prompt: string | { tokens: number[] }, options?: ReasonCallOptions): Promise<ReasonResult>;
  }
}
Model.prototype.reason = function (this: Model, prompt: string | { tokens: number[] }, options: ReasonCallOptions = {}) {
  return reason(this, prompt, options);
};

export interface ReasonProgress {
  /** Records reasoned in this run. */
  done: number;
  /** Records passed over (options.skip said so). */
  skipped: number;
  /** Records expected in all, when the caller said (options.total). */
  total?: number;
  id: string;
  /** Answer tokens decoded in this run (main answers only). */
  answerTokens: number;
  elapsedMs: number;
}

export interface ReasonItem {
  record: CaptureRecord;
  /** The number after "####" in the record's answer, or null. */
  gold: string | null;
  result: ReasonResult;
}

export interface ReasonStreamOptions extends ReasonCallOptions {
  total?: number;
  /** Called after the consumer has taken each item (so after it wrote it). */
  onProgress?: (p: ReasonProgress) => void;
  /** Records to pass over, e.g. those a resumed output already holds. */
  skip?: (record: CaptureRecord) => boolean;
}

/**
 * Reasons over records (an async iterable such as readPromptJsonl) one at a time, in one session;
 * memory does not grow with the number of records. Stops with an AbortError when the signal fires.
 */
export async function* reasonStream(
  model: Model,
  records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>,
  options: ReasonStreamOptions = {},
): AsyncGenerator<ReasonItem> {
  const { total, onProgress, skip, ...rest } = options;
  const { call, run } = splitOptions(rest);
  const head = requireLatentHead(model, call.latentHead);
  const session = call.session ?? model.createSession({ nCtx: reasoningContext(model), threads: call.threads ?? 0, kvType: call.kvType ?? 'f32' });
  const reasoner = new Reasoner(model, head, session);
  const started = Date.now();
  let done = 0;
  let skipped = 0;
  let answerTokens = 0;
  const seen = new Set<string>();
  try {
    for await (const record of records) {
      if (run.signal?.aborted) throw abortError();
      if (typeof record?.id !== 'string' || record.id === '') throw new InputError('reason: every record needs a non-empty string id');
      if (seen.has(record.id)) throw new InputError(`reason: record id "${record.id}" appears twice`);
      seen.add(record.id);
      if (skip?.(record)) {
        skipped++;
        onProgress?.({ done, skipped, total, id: record.id, answerTokens, elapsedMs: Date.now() - started });
        continue;
      }
      let prompt: string | { tokens: number[] };
      if (record.tokens) prompt = { tokens: Array.from(record.tokens) };
      else if (typeof record.text === 'string') prompt = record.text;
      else throw new InputError(`reason: record "${record.id}" has neither text nor tokens`);
      let result: ReasonResult;
      try {
        result = await reasoner.reason(prompt, run);
      } catch (e) {
        if (e instanceof Error && e.name === 'AbortError') throw e;
        // Name the record: in a dataset of thousands the message alone does not say which one.
        if (e instanceof InputError) throw new InputError(`record "${record.id}": ${e.message}`);
        if (e instanceof Error) e.message = `record "${record.id}": ${e.message}`;
        throw e;
      }
      yield { record, gold: goldAnswer(record.answer), result };
      done++;
      answerTokens += result.answerTokens.length;
      onProgress?.({ done, skipped, total, id: record.id, answerTokens, elapsedMs: Date.now() - started });
    }
  } finally {
    if (!call.session) session.dispose();
  }
}

/**
 * The mean fed embedding e_k of every latent step over a dataset (k = 0..N-1), for the `mean`
 * intervention: `{kind: 'mean', step: k, vector: means[k]}`. Runs the clean loop on each record
 * (no answer tokens needed); the averaging is native.
 */
export async function meanLatentInputs(
  model: Model,
  records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>,
  options: ReasonStreamOptions = {},
): Promise<Float32Array[]> {
  const width = model.info.nEmbd;
  const perStep: Float32Array[][] = [];
  for await (const item of reasonStream(model, records, { ...options, maxAnswerTokens: 0, earlyDecode: false, ablations: [], noReasoning: false, capture: [] })) {
    const steps = item.result.steps.slice(0, item.result.latentSteps);
    steps.forEach((s, k) => (perStep[k] ??= []).push(s.e));
  }
  if (perStep.length === 0) throw new InputError('meanLatentInputs: no records, or a head with no latent steps');
  return perStep.map((rows) => {
    const x = new Float32Array(rows.length * width);
    rows.forEach((r, i) => x.set(r, i * width));
    return native().meanRows(x, width);
  });
}
