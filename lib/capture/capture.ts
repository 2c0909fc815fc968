// Activation capture: runs records through the model and streams hook-point tensors to
// safetensors shards plus a manifest, so a crash or Ctrl-C loses at most the unwritten shard.
// A model with a latent head is captured through the reasoning loop (prompt, latent steps, eot,
// answer); any other model by feeding each record's tokens.
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { goldAnswer } from '../core/answers.js';
import { PositionSelectorSchema, type CaptureManifest, type CaptureRecord, type CaptureRecordEntry, type CaptureTensor } from './capture-manifest.js';
import { CaptureSink, type SinkTensor } from './capture-sink.js';
import { contentHash, type SourceIdentity } from '../core/content-hash.js';
import { ShardRun, ShardSchema, shardInfoPath } from '../core/shard.js';
import { abortError, InputError } from '../core/errors.js';
import { LatentHead } from '../reasoning/latent-head.js';
import type { Model } from '../engine/model.js';
import { native } from '../core/native.js';
import { parseOptions } from '../core/options.js';
import { findLatentHead, reasoningContext, requireLatentHead } from '../reasoning/reason.js';
import { Reasoner, type PositionKind, type ReasonResult } from '../reasoning/reasoner.js';
import { readSafetensorsTensor } from '../core/safetensors.js';
import { type Session } from '../engine/session.js';

import { LAYER_POINTS, MODEL_POINTS, REASONING_POINTS } from '../core/hook-points.js';

export { LAYER_POINTS, MODEL_POINTS, REASONING_POINTS };

const POINT_LIST = [...MODEL_POINTS, ...LAYER_POINTS, ...REASONING_POINTS].join(', ');

/** Checks one concrete point name (with its layer where it needs one); latent_proj only when reasoning. */
export function checkPointName(name: string, nLayer: number, reasoning = false): void {
  if (MODEL_POINTS.includes(name)) return;
  if (REASONING_POINTS.includes(name)) {
    if (reasoning) return;
    throw new InputError(`capture point "${name}" exists only in the reasoning loop (a model with a latent head, or --latent-head)`);
  }
  const m = /^([a-z_]+)\.(\d+)$/.exec(name);
  if (!m || !LAYER_POINTS.includes(m[1])) {
    if (LAYER_POINTS.includes(name))
      throw new InputError(`capture point "${name}" needs a layer (e.g. ${name}.0) or a layer list`);
    throw new InputError(`unknown capture point "${name}" (expected ${POINT_LIST}; layer points as NAME.LAYER)`);
  }
  const layer = Number(m[2]);
  if (layer >= nLayer) throw new InputError(`capture point "${name}": layer ${layer} is out of range (the model has layers 0..${nLayer - 1})`);
}

/**
 * Expands point names: a layer point without a layer (resid_post) becomes one name per selected
 * layer; explicit names (resid_post.2) and model points stay. Order is kept, duplicates dropped.
 */
export function expandCapturePoints(points: readonly string[], layers: 'all' | readonly number[], nLayer: number, reasoning = false): string[] {
  if (points.length === 0) throw new InputError('no capture points given');
  if (layers !== 'all') {
    if (layers.length === 0) throw new InputError('the layer list is empty');
    for (const l of layers)
      if (!Number.isInteger(l) || l < 0 || l >= nLayer)
        throw new InputError(`layer ${l} is out of range (the model has layers 0..${nLayer - 1})`);
  }
  const sel = layers === 'all' ? Array.from({ length: nLayer }, (_, i) => i) : [...layers];
  const out: string[] = [];
  for (const p of points) {
    const names = LAYER_POINTS.includes(p) ? sel.map((l) => `${p}.${l}`) : [p];
    for (const n of names) {
      checkPointName(n, nLayer, reasoning);
      if (!out.includes(n)) out.push(n);
    }
  }
  return out;
}

export type { CaptureRecord } from './capture-manifest.js';

export interface CaptureProgress {
  /** Records captured in this run. */
  captured: number;
  /** Records skipped because the manifest already had them (resume). */
  skipped: number;
  /** Records expected in all, when the caller said (options.total). */
  total?: number;
  /** Positions captured in this run. */
  tokens: number;
  recordId: string;
  /** Shards written so far (all runs). */
  shards: number;
  elapsedMs: number;
}

export const CaptureOptionsSchema = z
  .object({
    /** Output folder (created if missing). */
    out: z.string().min(1),
    /** Concrete point names (see expandCapturePoints). */
    points: z.array(z.string().min(1)).min(1),
    dtype: z.enum(['f32', 'f16', 'bf16']).default('f32'),
    /** Bound on the tensor bytes of one shard, which is also what is held in memory. */
    shardBytes: z.number().int().positive().default(256 * 1024 * 1024),
    /** Also write the buffered shard when its oldest tensor is this old (0: only when full). */
    flushIntervalMs: z.number().int().min(0).default(60_000),
    /** Continue a capture folder, skipping the records its manifest lists. */
    resume: z.boolean().default(false),
    addBos: z.boolean().default(true),
    parseSpecial: z.boolean().default(false),
    /** Positions per forward pass; a longer record is run in pieces through the KV cache. */
    batchSize: z.number().int().positive().max(65536).default(512),
    threads: z.number().int().min(0).max(1024).default(0),
    kvType: z.enum(['f32', 'f16']).default('f32'),
    /** Number of records expected (for progress only). */
    total: z.number().int().min(0).optional(),
    /** Positions to keep: kinds (prompt, bot, latent, eot, answer) and/or 0-based indices; default all. */
    positions: z.array(PositionSelectorSchema).min(1).optional(),
    /** auto: the reasoning loop when the model has a latent head (or latentHead is given), else plain. */
    mode: z.enum(['auto', 'reasoning', 'plain']).default('auto'),
    /** Latent-head sidecar path or loaded head (default: found beside or inside the model). */
    latentHead: z.union([z.string().min(1), z.custom<LatentHead>((v) => v instanceof LatentHead, { message: 'expected a file path or a LatentHead' })]).optional(),
    /** Latent steps (default: the head's). */
    latentSteps: z.number().int().min(0).max(4096).optional(),
    /** Prompt format (default: the head's). */
    format: z.enum(['codi-answer-only', 'codi', 'plain']).optional(),
    maxAnswerTokens: z.number().int().min(0).max(1 << 20).default(32),
    temperature: z.number().min(0).default(0),
    seed: z.number().int().min(0).default(0),
    /** What the records came from (fileSource / textSource): kept in the manifest; a resume from another source is refused. */
    source: z.object({ what: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict().optional(),
    /** Capture only this shard's records (see shard.ts); the folder gets a shard file for `merge`. */
    shard: ShardSchema.optional(),
  })
  .strict();
export type CaptureOptions = z.input<typeof CaptureOptionsSchema>;

export interface CaptureResult {
  manifest: CaptureManifest;
  captured: number;
  skipped: number;
  tokens: number;
}

async function eachRecord(records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>): Promise<AsyncIterator<CaptureRecord>> {
  if (Symbol.asyncIterator in records) return (records as AsyncIterable<CaptureRecord>)[Symbol.asyncIterator]();
  const it = (records as Iterable<CaptureRecord>)[Symbol.iterator]();
  return { next: async () => it.next() };
}

/**
 * Runs one record (in pieces of batchSize) and returns each point's values at the wanted rows
 * (all rows when rows is null), [rows, width] in pieces.
 */
async function evalRecord(
  session: Session,
  tokens: readonly number[],
  points: readonly string[],
  rows: readonly number[] | null,
  batchSize: number,
  signal: AbortSignal | undefined,
): Promise<Map<string, Float32Array[]>> {
  const wantLogits = points.includes('logits');
  const wantFinal = points.includes('final_norm');
  const hooks = points.filter((p) => p !== 'logits' && p !== 'final_norm');
  const parts = new Map<string, Float32Array[]>(points.map((p) => [p, []]));
  for (let s = 0; s < tokens.length; s += batchSize) {
    const piece = tokens.slice(s, s + batchSize);
    // A piece with no wanted row still goes through: later pieces attend to its cache.
    const out = rows === null ? 'all' : rows.filter((r) => r >= s && r < s + piece.length).map((r) => r - s);
    const r = await session.eval({
      tokens: piece,
      outputRows: out,
      logits: wantLogits,
      finalNorm: wantFinal,
      capture: hooks.length ? hooks : undefined,
      signal,
    });
    if (r.rows.length === 0) continue;
    if (wantLogits) parts.get('logits')!.push(r.logits!);
    if (wantFinal) parts.get('final_norm')!.push(r.finalNorm!);
    for (const h of hooks) {
      const c = r.captures[h];
      if (!c) throw new Error(`the engine returned no capture for "${h}"`);
      parts.get(h)!.push(c);
    }
  }
  return parts;
}

/** The manifest entry of a reasoning record: question, the main sequence with -1 at latent steps, kinds, answer. */
export function reasoningRecordEntry(record: CaptureRecord, result: ReasonResult, eotId: number): Omit<CaptureRecordEntry, 'tensors'> {
  const tokens = [...result.promptTokens, ...new Array<number>(result.latentSteps).fill(-1), eotId, ...result.answerTokens].slice(
    0,
    result.positionKinds.length,
  );
  const gold = goldAnswer(record.answer);
  return {
    id: record.id,
    ...(typeof record.text === 'string' ? { question: record.text } : {}),
    tokens,
    positionKinds: result.positionKinds,
    latentSteps: result.latentSteps,
    answer: result.answer,
    answerTokens: result.answerTokens,
    stopToken: result.stopToken,
    ...(gold !== null ? { gold } : {}),
  };
}

/** A reasoning result's captures as sink tensors; positions are listed unless they are all of them. */
export function reasoningTensors(result: ReasonResult, points: readonly string[]): SinkTensor[] {
  const n = result.positionKinds.length;
  return points.map((point) => {
    const c = result.captures[point];
    if (!c) throw new Error(`the reasoning loop returned no capture for "${point}"`);
    const all = c.positions.length === n && c.positions.every((p, i) => p === i);
    return { point, width: c.width, parts: [c.data], ...(all ? {} : { positions: c.positions }) };
  });
}

/** The reasoning block of the manifest settings. */
export function reasoningSettings(
  head: LatentHead,
  o: { latentSteps?: number; format?: string; maxAnswerTokens: number; temperature: number; seed: number },
): NonNullable<CaptureManifest['settings']['reasoning']> {
  const hs = head.settings;
  return {
    latentHead: hs.path,
    mode: hs.mode,
    latentSteps: o.latentSteps ?? hs.steps,
    format: (o.format ?? hs.promptFormat) as 'codi-answer-only' | 'codi' | 'plain',
    maxAnswerTokens: o.maxAnswerTokens,
    temperature: o.temperature,
    seed: o.seed,
  };
}

/** The manifest's inputs block: the latent head and the records' source, by content. */
export async function captureInputs(head: LatentHead | null, source: SourceIdentity | undefined): Promise<NonNullable<CaptureManifest['inputs']>> {
  return { latentHeadSha256: head ? await contentHash(head.settings.path) : null, source: source ?? null };
}

/** The model block of a manifest (with the file's content hash). */
export async function manifestModel(model: Model): Promise<CaptureManifest['model']> {
  const info = model.info;
  return {
    path: resolve(info.path),
    sha256: await contentHash(info.path),
    name: info.name,
    architecture: info.architecture,
    fileSize: info.fileSize,
    nVocab: info.nVocab,
    nEmbd: info.nEmbd,
    nLayer: info.nLayer,
  };
}

/** Plain captures have no latent steps: only 'prompt' (every token) and indices select. */
function plainRows(positions: readonly (PositionKind | number)[] | undefined, n: number): number[] | null {
  if (!positions || positions.includes('prompt')) return null;
  return [...new Set(positions as number[])].filter((p) => p < n).sort((a, b) => a - b);
}

/**
 * Captures hook-point activations of each record into options.out (manifest.json + shards);
 * tensors are [positions, width]. With a latent head each record is a question run through the
 * reasoning loop (prompt, latent steps, eot, answer; latent_proj available); otherwise its tokens
 * are fed from position 0 in a fresh KV cache.
 * Shards and the manifest are replaced atomically; the manifest lists a record only once all of
 * its tensors are on disk, so an interrupted run (signal, crash) keeps every listed record, and a
 * rerun with resume: true skips them. On abort the buffered shard is written before the
 * AbortError is thrown.
 */
export async function capture(
  model: Model,
  records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>,
  options: CaptureOptions & { signal?: AbortSignal; onProgress?: (p: CaptureProgress) => void },
): Promise<CaptureResult> {
  const { signal, onProgress, ...rest } = options;
  const o = parseOptions(CaptureOptionsSchema, rest, 'capture options');
  const info = model.info;
  if (info.vocabOnly) throw new InputError(`${info.path} is a vocab-only GGUF (no weights); capture needs a full model`);
  let head: LatentHead | null = null;
  if (o.mode === 'reasoning' || (o.mode === 'auto' && o.latentHead !== undefined)) head = requireLatentHead(model, o.latentHead);
  else if (o.mode === 'auto') head = findLatentHead(model);
  for (const p of o.points) checkPointName(p, info.nLayer, head !== null);
  if (new Set(o.points).size !== o.points.length) throw new InputError('capture points contain duplicates');
  if (!head)
    for (const p of o.positions ?? [])
      if (typeof p === 'string' && p !== 'prompt')
        throw new InputError(`position kind "${p}" exists only in the reasoning loop (a model with a latent head, or --latent-head); a plain capture has prompt positions only`);

  const shardFile = shardInfoPath(o.out, 'folder');
  const shardRun = await ShardRun.open(o.shard, 'capture', [{ output: o.out, info: shardFile }]);
  const sink = await CaptureSink.open({
    out: o.out,
    resume: o.resume,
    shardBytes: o.shardBytes,
    flushIntervalMs: o.flushIntervalMs,
    model: await manifestModel(model),
    inputs: await captureInputs(head, o.source),
    settings: {
      points: o.points,
      dtype: o.dtype,
      addBos: o.addBos,
      parseSpecial: o.parseSpecial,
      batchSize: o.batchSize,
      kvType: o.kvType,
      positions: o.positions ?? null,
      reasoning: head ? reasoningSettings(head, o) : null,
    },
  });

  const started = Date.now();
  let captured = 0;
  let skipped = 0;
  let tokenCount = 0;
  const nCtx = reasoningContext(model);
  const session = model.createSession({ nCtx, threads: o.threads, kvType: o.kvType });
  const reasoner = head ? new Reasoner(model, head, session) : null;
  const seen = new Set<string>();
  const progress = (id: string) =>
    onProgress?.({ captured, skipped, total: o.total, tokens: tokenCount, recordId: id, shards: sink.shardCount, elapsedMs: Date.now() - started });
  let it: AsyncIterator<CaptureRecord> | undefined;
  try {
    await shardRun?.write(shardFile, [], false);
    it = await eachRecord(shardRun ? shardRun.filter(records) : records);
    for (;;) {
      if (signal?.aborted) throw abortError();
      const next = await it.next();
      if (next.done) break;
      const rec = next.value;
      if (typeof rec?.id !== 'string' || rec.id.length === 0) throw new InputError('capture: every record needs a non-empty string id');
      if (seen.has(rec.id)) throw new InputError(`capture: record id "${rec.id}" appears twice`);
      seen.add(rec.id);
      if (sink.has(rec.id)) {
        skipped++;
        progress(rec.id);
        continue;
      }
      if (rec.tokens === undefined && typeof rec.text !== 'string') throw new InputError(`capture: record "${rec.id}" has neither text nor tokens`);
      if (rec.tokens) {
        const bad = rec.tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= info.nVocab);
        if (bad >= 0) throw new InputError(`capture: record "${rec.id}": token ${rec.tokens[bad]} at index ${bad} is outside the vocabulary [0, ${info.nVocab})`);
      }

      let entry: Omit<CaptureRecordEntry, 'tensors'>;
      let tensors: SinkTensor[];
      if (reasoner) {
        let result: ReasonResult;
        try {
          result = await reasoner.reason(rec.tokens ? { tokens: Array.from(rec.tokens) } : rec.text!, {
            latentSteps: o.latentSteps,
            format: o.format,
            maxAnswerTokens: o.maxAnswerTokens,
            temperature: o.temperature,
            seed: o.seed,
            lensTopK: 1,
            capture: o.points,
            capturePositions: o.positions,
            signal,
          });
        } catch (e) {
          if (e instanceof Error && e.name !== 'AbortError') e.message = `capture: record "${rec.id}": ${e.message}`;
          throw e;
        }
        entry = reasoningRecordEntry(rec, result, head!.settings.eotId);
        tensors = reasoningTensors(result, o.points);
      } else {
        const tokens = rec.tokens ? Array.from(rec.tokens) : model.tokenize(rec.text!, { addBos: o.addBos, parseSpecial: o.parseSpecial });
        if (tokens.length === 0) throw new InputError(`capture: record "${rec.id}" has no tokens (empty text without BOS?)`);
        if (tokens.length > nCtx) throw new InputError(`capture: record "${rec.id}" has ${tokens.length} tokens, more than the model's context ${nCtx}`);
        const rows = plainRows(o.positions, tokens.length);
        let parts: Map<string, Float32Array[]>;
        try {
          parts = await evalRecord(session, tokens, o.points, rows, o.batchSize, signal);
        } finally {
          session.remove(0);
        }
        entry = { id: rec.id, ...(rec.text !== undefined ? { text: rec.text } : {}), tokens };
        tensors = o.points.map((point) => ({
          point,
          width: point === 'logits' ? info.nVocab : info.nEmbd,
          parts: parts.get(point)!,
          ...(rows ? { positions: rows } : {}),
        }));
      }
      await sink.add(entry, tensors);
      captured++;
      tokenCount += entry.tokens.length;
      progress(rec.id);
    }
    const manifest = await sink.finish();
    await shardRun?.write(shardFile, manifest.records.map((r) => r.id), true);
    return { manifest, captured, skipped, tokens: tokenCount };
  } catch (e) {
    // Keep what finished before the failure or interruption; the original error is what matters.
    await sink.salvage();
    throw e;
  } finally {
    session.dispose();
    // Lets a file-backed record source close its file when the loop stops early.
    await it?.return?.().catch(() => undefined);
  }
}

/** One captured tensor's raw bytes, as stored (F32, F16 or BF16, row-major [positions, width]). */
export async function readCaptureTensor(dir: string, tensor: CaptureTensor): Promise<{ dtype: CaptureTensor['dtype']; shape: [number, number]; data: Uint8Array }> {
  const t = await readSafetensorsTensor(join(dir, tensor.file), tensor.key);
  if (t.dtype !== tensor.dtype || t.shape.length !== 2 || t.shape[0] !== tensor.shape[0] || t.shape[1] !== tensor.shape[1])
    throw new InputError(`${join(dir, tensor.file)}: tensor "${tensor.key}" is ${t.dtype} ${JSON.stringify(t.shape)}, the manifest says ${tensor.dtype} ${JSON.stringify(tensor.shape)}`);
  return { dtype: tensor.dtype, shape: tensor.shape, data: t.data };
}

/** A captured tensor as float32 (f16/bf16 widened natively). */
export async function readCaptureTensorF32(dir: string, tensor: CaptureTensor): Promise<Float32Array> {
  const t = await readCaptureTensor(dir, tensor);
  const n = t.shape[0] * t.shape[1];
  if (t.dtype === 'F32') return new Float32Array(t.data.buffer, t.data.byteOffset, n);
  return native().dequantize(t.dtype === 'F16' ? 'f16' : 'bf16', t.data, n);
}
