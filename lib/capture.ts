// Activation capture: runs records through the model and streams hook-point tensors to
// safetensors shards plus a manifest, so a crash or Ctrl-C loses at most the unwritten shard.
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  CAPTURE_FORMAT,
  CAPTURE_VERSION,
  MANIFEST_FILE,
  readCaptureManifest,
  writeCaptureManifest,
  type CaptureManifest,
  type CaptureRecordEntry,
  type CaptureTensor,
} from './capture-manifest.js';
import { InputError } from './errors.js';
import type { Model } from './model.js';
import { native } from './native.js';
import { parseOptions } from './options.js';
import { readSafetensorsTensor, type SafetensorsDtype } from './safetensors.js';
import { abortError, type Session } from './session.js';
import { SHARD_FILE_PATTERN, ShardWriter, type WrittenShard } from './shard-writer.js';

/** Points that exist once per layer; named POINT.LAYER (e.g. resid_post.3). */
export const LAYER_POINTS = ['resid_pre', 'attn_out', 'resid_mid', 'mlp_out', 'resid_post'] as const;
/** Points without a layer. embed is the layer-0 input (equal to resid_pre.0). */
export const MODEL_POINTS = ['embed', 'final_norm', 'logits'] as const;

const POINT_LIST = [...MODEL_POINTS, ...LAYER_POINTS].join(', ');

/** Checks one concrete point name (with its layer where it needs one). */
export function checkPointName(name: string, nLayer: number): void {
  if ((MODEL_POINTS as readonly string[]).includes(name)) return;
  const m = /^([a-z_]+)\.(\d+)$/.exec(name);
  if (!m || !(LAYER_POINTS as readonly string[]).includes(m[1])) {
    if ((LAYER_POINTS as readonly string[]).includes(name))
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
export function expandCapturePoints(points: readonly string[], layers: 'all' | readonly number[], nLayer: number): string[] {
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
    const names = (LAYER_POINTS as readonly string[]).includes(p) ? sel.map((l) => `${p}.${l}`) : [p];
    for (const n of names) {
      checkPointName(n, nLayer);
      if (!out.includes(n)) out.push(n);
    }
  }
  return out;
}

export interface CaptureRecord {
  /** Unique within a capture folder; resume skips ids already in the manifest. */
  id: string;
  text?: string;
  /** Token ids; when absent, text is tokenized with the capture's addBos / parseSpecial. */
  tokens?: readonly number[];
}

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
  })
  .strict();
export type CaptureOptions = z.input<typeof CaptureOptionsSchema>;

export interface CaptureResult {
  manifest: CaptureManifest;
  captured: number;
  skipped: number;
  tokens: number;
}

const SAFETENSORS_DTYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const satisfies Record<string, SafetensorsDtype>;

function sameSettings(a: CaptureManifest['settings'], b: CaptureManifest['settings']): string | undefined {
  for (const k of Object.keys(a) as (keyof CaptureManifest['settings'])[])
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) return `${k} is ${JSON.stringify(a[k])} there, ${JSON.stringify(b[k])} now`;
  return undefined;
}

async function eachRecord(records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>): Promise<AsyncIterator<CaptureRecord>> {
  if (Symbol.asyncIterator in records) return (records as AsyncIterable<CaptureRecord>)[Symbol.asyncIterator]();
  const it = (records as Iterable<CaptureRecord>)[Symbol.iterator]();
  return { next: async () => it.next() };
}

/** Runs one record (in pieces of batchSize) and returns each point's [n, width] values. */
async function evalRecord(
  session: Session,
  tokens: readonly number[],
  points: readonly string[],
  batchSize: number,
  signal: AbortSignal | undefined,
): Promise<Map<string, Float32Array[]>> {
  const wantLogits = points.includes('logits');
  const wantFinal = points.includes('final_norm');
  const hooks = points.filter((p) => p !== 'logits' && p !== 'final_norm');
  const parts = new Map<string, Float32Array[]>(points.map((p) => [p, []]));
  for (let s = 0; s < tokens.length; s += batchSize) {
    const r = await session.eval({
      tokens: tokens.slice(s, s + batchSize),
      outputRows: 'all',
      logits: wantLogits,
      finalNorm: wantFinal,
      capture: hooks.length ? hooks : undefined,
      signal,
    });
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

/** Bytes of the [n, width] tensor in the output dtype; the f16/bf16 rounding is native. */
function encodeTensor(parts: Float32Array[], dtype: 'f32' | 'f16' | 'bf16'): Uint8Array[] {
  return parts.map((p) => (dtype === 'f32' ? new Uint8Array(p.buffer, p.byteOffset, p.byteLength) : native().quantize(dtype, p)));
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/**
 * Captures hook-point activations of each record into options.out (manifest.json + shards).
 * Each record is run from position 0 in its own KV cache; tensors are [positions, width].
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
  for (const p of o.points) checkPointName(p, info.nLayer);
  if (new Set(o.points).size !== o.points.length) throw new InputError('capture points contain duplicates');

  const settings: CaptureManifest['settings'] = {
    points: o.points,
    dtype: o.dtype,
    addBos: o.addBos,
    parseSpecial: o.parseSpecial,
    batchSize: o.batchSize,
    kvType: o.kvType,
  };
  const modelEntry: CaptureManifest['model'] = {
    path: info.path,
    name: info.name,
    architecture: info.architecture,
    fileSize: info.fileSize,
    nVocab: info.nVocab,
    nEmbd: info.nEmbd,
    nLayer: info.nLayer,
  };

  await mkdir(o.out, { recursive: true });
  const exists = await stat(join(o.out, MANIFEST_FILE)).then(
    () => true,
    () => false,
  );
  let manifest: CaptureManifest;
  if (exists) {
    if (!o.resume)
      throw new InputError(`${o.out} already holds a capture (${MANIFEST_FILE}); resume it (--resume) or choose another output folder`);
    manifest = await readCaptureManifest(o.out);
    const diff = sameSettings(manifest.settings, settings);
    if (diff) throw new InputError(`${join(o.out, MANIFEST_FILE)} was made with other settings (${diff}); resume needs the same ones`);
    for (const k of ['nVocab', 'nEmbd', 'nLayer', 'fileSize'] as const)
      if (manifest.model[k] !== modelEntry[k])
        throw new InputError(`${join(o.out, MANIFEST_FILE)} was made with another model (${manifest.model.path}; ${k} differs)`);
    manifest.complete = false;
  } else {
    const now = new Date().toISOString();
    manifest = {
      format: CAPTURE_FORMAT,
      version: CAPTURE_VERSION,
      createdAt: now,
      updatedAt: now,
      complete: false,
      model: modelEntry,
      settings,
      shards: [],
      records: [],
    };
  }

  // Leftovers of a killed run: temp files are garbage, and shard files the manifest does not list
  // hold only unlisted records; new shards are numbered after every existing file so none is reused.
  let nextShard = 0;
  for (const f of await readdir(o.out)) {
    if (/^(shard-\d+\.safetensors|manifest\.json)\.tmp-/.test(f)) await rm(join(o.out, f), { force: true });
    const m = SHARD_FILE_PATTERN.exec(f);
    if (m) nextShard = Math.max(nextShard, Number(m[1]) + 1);
  }
  for (const s of manifest.shards) {
    const m = SHARD_FILE_PATTERN.exec(s.file);
    if (m) nextShard = Math.max(nextShard, Number(m[1]) + 1);
  }
  // Written at the first shard: a run that fails on its first record leaves no manifest behind.
  let manifestOnDisk = exists;

  const done = new Set(manifest.records.map((r) => r.id));
  const seen = new Set<string>();
  const onDisk = new Set(manifest.shards.map((s) => s.file));
  const waiting: CaptureRecordEntry[] = [];
  const writer = new ShardWriter(o.out, o.shardBytes, nextShard, { format: CAPTURE_FORMAT, version: String(CAPTURE_VERSION) });
  const dt = SAFETENSORS_DTYPE[o.dtype];

  // Moves records whose tensors are all on disk into the manifest, then rewrites it.
  const commit = async (shard: WrittenShard | undefined) => {
    if (shard) {
      manifest.shards.push(shard);
      onDisk.add(shard.file);
    }
    while (waiting.length && Object.values(waiting[0].tensors).every((t) => onDisk.has(t.file))) manifest.records.push(waiting.shift()!);
    manifest.updatedAt = new Date().toISOString();
    await writeCaptureManifest(o.out, manifest);
    manifestOnDisk = true;
  };

  const started = Date.now();
  let captured = 0;
  let skipped = 0;
  let tokenCount = 0;
  const nCtx = Math.min(Math.max(info.nCtxTrain, 1), 1 << 20);
  const session = model.createSession({ nCtx, threads: o.threads, kvType: o.kvType });
  let it: AsyncIterator<CaptureRecord> | undefined;
  try {
    it = await eachRecord(records);
    for (;;) {
      if (signal?.aborted) throw abortError();
      const next = await it.next();
      if (next.done) break;
      const rec = next.value;
      if (typeof rec?.id !== 'string' || rec.id.length === 0) throw new InputError('capture: every record needs a non-empty string id');
      if (seen.has(rec.id)) throw new InputError(`capture: record id "${rec.id}" appears twice`);
      seen.add(rec.id);
      if (done.has(rec.id)) {
        skipped++;
        onProgress?.({ captured, skipped, total: o.total, tokens: tokenCount, recordId: rec.id, shards: manifest.shards.length, elapsedMs: Date.now() - started });
        continue;
      }
      let tokens: number[];
      if (rec.tokens) tokens = Array.from(rec.tokens);
      else if (typeof rec.text === 'string') tokens = model.tokenize(rec.text, { addBos: o.addBos, parseSpecial: o.parseSpecial });
      else throw new InputError(`capture: record "${rec.id}" has neither text nor tokens`);
      if (tokens.length === 0) throw new InputError(`capture: record "${rec.id}" has no tokens (empty text without BOS?)`);
      if (tokens.length > nCtx) throw new InputError(`capture: record "${rec.id}" has ${tokens.length} tokens, more than the model's context ${nCtx}`);
      const bad = tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= info.nVocab);
      if (bad >= 0) throw new InputError(`capture: record "${rec.id}": token ${tokens[bad]} at index ${bad} is outside the vocabulary [0, ${info.nVocab})`);

      let parts: Map<string, Float32Array[]>;
      try {
        parts = await evalRecord(session, tokens, o.points, o.batchSize, signal);
      } finally {
        session.remove(0);
      }
      const entry: CaptureRecordEntry = { id: rec.id, ...(rec.text !== undefined ? { text: rec.text } : {}), tokens, tensors: {} };
      for (const point of o.points) {
        const width = point === 'logits' ? info.nVocab : info.nEmbd;
        const key = `${rec.id}/${point}`;
        const bytes = concatBytes(encodeTensor(parts.get(point)!, o.dtype));
        parts.delete(point);
        const { file, flushed } = await writer.add(key, dt, [tokens.length, width], bytes);
        const t: CaptureTensor = { file, key, shape: [tokens.length, width], dtype: dt };
        entry.tensors[point] = t;
        if (flushed) await commit(flushed);
      }
      waiting.push(entry);
      captured++;
      tokenCount += tokens.length;
      const stale = o.flushIntervalMs > 0 && writer.bufferedSince > 0 && Date.now() - writer.bufferedSince >= o.flushIntervalMs;
      if (writer.bufferedBytes >= o.shardBytes || stale) await commit(await writer.flush());
      onProgress?.({ captured, skipped, total: o.total, tokens: tokenCount, recordId: rec.id, shards: manifest.shards.length, elapsedMs: Date.now() - started });
    }
    await commit(await writer.flush());
    manifest.complete = true;
    await commit(undefined);
  } catch (e) {
    // Keep what finished before the failure or interruption; the original error is what matters.
    try {
      const shard = await writer.flush();
      if (shard || manifestOnDisk) await commit(shard);
    } catch {
      /* reported below through e */
    }
    throw e;
  } finally {
    session.dispose();
    // Lets a file-backed record source close its file when the loop stops early.
    await it?.return?.().catch(() => undefined);
  }
  return { manifest, captured, skipped, tokens: tokenCount };
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
