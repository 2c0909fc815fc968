// Asking a trained activation oracle about vectors: the prompt is built exactly as in training
// (lib/oracle/oracle-data.ts), the adapter is applied unmerged, and each vector is injected at its
// placeholder with the trainer's own operation (native edit mode 'inject' at resid_post.<layer>),
// so inference sees what training saw. Vectors come inline, from a safetensors file, or from a
// capture folder (record, latent step, layer).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { readCaptureTensorF32 } from '../capture/capture.js';
import { readCaptureManifest } from '../capture/capture-manifest.js';
import { convertAdapter } from '../engine/convert.js';
import { abortError, InputError } from '../core/errors.js';
import { loadModel, type Model } from '../engine/model.js';
import { native, type NativeAdapter, type NativeEdit } from '../core/native.js';
import { injectPoint, readOracleSettings, type OracleSettings } from './oracle-common.js';
import { buildOracleInput, type OracleExample } from './oracle-data.js';
import { parseOptions } from '../core/options.js';
import { type Session } from '../engine/session.js';
import { readSafetensorsHeader, readSafetensorsTensor } from '../core/safetensors.js';

/** Rows of a 2-D tensor in a safetensors file. */
export interface SafetensorsVectors {
  file: string;
  key: string;
  rows: number[];
}

/**
 * Activations from a capture folder (lro-native capture). steps: latent steps, as trace counts them
 * (0 = the bot position, k = the k-th latent position); positions: main-sequence indices instead
 * (plain captures have no latent steps).
 */
export interface CaptureVectors {
  capture: string;
  record: string;
  layer: number;
  steps?: number[];
  positions?: number[];
  /** Default resid_post.<layer>. */
  point?: string;
}

export type OracleVectorSource = Float32Array | SafetensorsVectors | CaptureVectors;

export interface ResolvedVectors {
  /** [count * nEmbd] */
  data: Float32Array;
  count: number;
  /** The layer the vectors were read at, when the source tells (it goes into the prompt). */
  layer: number | null;
}

function toF32(dtype: string, data: Uint8Array, n: number, where: string): Float32Array {
  if (dtype === 'F32') return new Float32Array(data.buffer, data.byteOffset, n);
  if (dtype === 'F16' || dtype === 'BF16') return native().dequantize(dtype.toLowerCase(), data, n);
  throw new InputError(`${where} has dtype ${dtype}; vectors must be F32, F16 or BF16`);
}

/** Loads vectors from any source, checked against the model width; errors name the file and key. */
export async function resolveVectors(src: OracleVectorSource, width: number): Promise<ResolvedVectors> {
  if (src instanceof Float32Array) {
    if (src.length === 0 || src.length % width !== 0)
      throw new InputError(`vectors: ${src.length} values is not a positive multiple of the model width ${width}`);
    return { data: src, count: src.length / width, layer: null };
  }
  if ('file' in src) {
    const file = resolve(src.file);
    if (src.rows.length === 0) throw new InputError('--rows: give at least one row');
    let h;
    try {
      h = await readSafetensorsHeader(file);
    } catch (e) {
      throw new InputError((e as NodeJS.ErrnoException).code === 'ENOENT' ? `vectors file not found: ${src.file}` : (e as Error).message);
    }
    const t = h.tensors.get(src.key);
    if (!t) {
      const names = [...h.tensors.keys()];
      throw new InputError(`${src.file}: no tensor "${src.key}" (it has ${names.slice(0, 8).join(', ')}${names.length > 8 ? ', …' : ''})`);
    }
    if (t.shape.length !== 2) throw new InputError(`${src.file}: tensor ${src.key} is ${JSON.stringify(t.shape)}; vectors must be 2-D [rows, width]`);
    if (t.shape[1] !== width) throw new InputError(`${src.file}: tensor ${src.key} has width ${t.shape[1]}, the model width is ${width}`);
    for (const r of src.rows)
      if (!Number.isInteger(r) || r < 0 || r >= t.shape[0]) throw new InputError(`${src.file}: row ${r} is outside ${src.key} (${t.shape[0]} rows)`);
    const raw = await readSafetensorsTensor(file, src.key, h);
    const all = toF32(raw.dtype, raw.data, t.shape[0] * width, `${src.file}: tensor ${src.key}`);
    const data = new Float32Array(src.rows.length * width);
    src.rows.forEach((r, i) => data.set(all.subarray(r * width, (r + 1) * width), i * width));
    const m = /(?:^|[./])resid_post\.(\d+)$/.exec(src.key);
    return { data, count: src.rows.length, layer: m ? Number(m[1]) : null };
  }
  return captureVectors(src, width);
}

async function captureVectors(src: CaptureVectors, width: number): Promise<ResolvedVectors> {
  const dir = src.capture;
  const m = await readCaptureManifest(dir);
  const rec = m.records.find((r) => r.id === src.record);
  if (!rec) {
    const ids = m.records.map((r) => r.id);
    throw new InputError(`${dir}: no record "${src.record}" (records: ${ids.slice(0, 8).join(', ')}${ids.length > 8 ? ', …' : ''})`);
  }
  if (m.model.nEmbd !== width) throw new InputError(`${dir}: captured from a model of width ${m.model.nEmbd}, the oracle's base has width ${width}`);
  const point = src.point ?? `resid_post.${src.layer}`;
  const t = rec.tensors[point];
  if (!t) throw new InputError(`${dir}: record "${rec.id}" has no ${point} (captured: ${Object.keys(rec.tensors).join(', ') || 'nothing'})`);
  if ((src.steps === undefined) === (src.positions === undefined)) throw new InputError('capture vectors: give latent steps or positions (one of them)');
  let positions: number[];
  const what: string[] = [];
  if (src.steps) {
    const kinds = rec.positionKinds;
    if (!kinds) throw new InputError(`${dir}: record "${rec.id}" is a plain capture with no latent steps; select positions instead of steps`);
    const bot = kinds.indexOf('bot');
    const latent = kinds.flatMap((k, i) => (k === 'latent' ? [i] : []));
    positions = src.steps.map((k) => {
      if (k === 0) {
        if (bot < 0) throw new InputError(`${dir}: record "${rec.id}" has no bot position (step 0)`);
        return bot;
      }
      if (k < 0 || k > latent.length) throw new InputError(`${dir}: record "${rec.id}" has latent steps 0..${latent.length}; asked for step ${k}`);
      return latent[k - 1];
    });
    what.push(...src.steps.map((k) => `latent step ${k}`));
  } else {
    positions = src.positions!;
    for (const p of positions)
      if (p < 0 || p >= rec.tokens.length) throw new InputError(`${dir}: record "${rec.id}" has positions 0..${rec.tokens.length - 1}; asked for ${p}`);
    what.push(...positions.map((p) => `position ${p}`));
  }
  const rows = positions.map((p, i) => {
    const r = t.positions ? t.positions.indexOf(p) : p;
    if (r < 0)
      throw new InputError(`${dir}: record "${rec.id}" was captured without position ${p} (${what[i]}) at ${point}; capture again with --positions covering it`);
    return r;
  });
  const all = await readCaptureTensorF32(dir, t);
  const data = new Float32Array(rows.length * width);
  rows.forEach((r, i) => data.set(all.subarray(r * width, (r + 1) * width), i * width));
  return { data, count: rows.length, layer: src.point === undefined ? src.layer : null };
}

export const OracleRunnerOptionsSchema = z
  .object({
    /** Default: the adapter's oracle.json, else 1 (the trainer's default). */
    injectLayer: z.number().int().min(-1).optional(),
    injectCoef: z.number().positive().finite().optional(),
    /** Multiplies the adapter's alpha / r; 1 as trained. */
    adapterScale: z.number().finite().default(1),
    threads: z.number().int().min(0).max(1024).default(0),
    kvType: z.enum(['f32', 'f16']).default('f32'),
  })
  .strict();
export type OracleRunnerOptions = z.input<typeof OracleRunnerOptionsSchema>;

export const OracleGenerateOptionsSchema = z
  .object({
    maxTokens: z.number().int().min(1).max(65536).default(64),
    /** 0: greedy (lowest id on ties). */
    temperature: z.number().min(0).finite().default(0),
    topK: z.number().int().min(0).default(0),
    topP: z.number().gt(0).max(1).default(1),
    seed: z.number().int().min(0).max(0xffffffff).default(0),
    /** Questions decoded together in one batch (one sequence each). */
    batchSize: z.number().int().min(1).max(4096).default(16),
  })
  .strict();
export type OracleGenerateOptions = z.input<typeof OracleGenerateOptionsSchema>;

export interface OracleQuery {
  /** The layer label of the prompt ("Layer: {layer}"). */
  layer: number | string;
  question: string;
  /** Number of placeholders in the prompt. */
  count: number;
  /** [count * nEmbd], or null: the prompt alone, nothing injected. */
  vectors: Float32Array | null;
}

export interface OracleAnswer {
  /** The decoded answer as generated (it usually starts with a space, as the training answers did). */
  text: string;
  tokens: number[];
  promptTokens: number[];
  positions: number[];
  stoppedAt: 'eog' | 'maxTokens';
}

/** A base model with an oracle adapter loaded, answering questions about vectors in batches. */
export class OracleRunner {
  readonly model: Model;
  readonly injectLayer: number;
  readonly injectCoef: number;
  readonly settings: OracleSettings | null;
  private readonly adapter: NativeAdapter | null;
  private readonly adapterScale: number;
  private readonly threads: number;
  private readonly kvType: 'f32' | 'f16';
  private readonly ownsModel: boolean;

  private constructor(model: Model, ownsModel: boolean, adapter: NativeAdapter | null, settings: OracleSettings | null, o: z.output<typeof OracleRunnerOptionsSchema>) {
    this.model = model;
    this.ownsModel = ownsModel;
    this.adapter = adapter;
    this.settings = settings;
    this.injectLayer = o.injectLayer ?? settings?.injectLayer ?? 1;
    this.injectCoef = o.injectCoef ?? settings?.injectCoef ?? 1;
    this.adapterScale = o.adapterScale;
    this.threads = o.threads;
    this.kvType = o.kvType;
    if (this.injectLayer >= model.info.nLayer)
      throw new InputError(`inject layer ${this.injectLayer} is outside the model's blocks -1..${model.info.nLayer - 1}`);
  }

  /**
   * base: a GGUF path or a loaded Model (then it stays the caller's); adapter: a llama.cpp GGUF
   * adapter, a PEFT folder (converted on the way), or null for the base alone.
   */
  static async open(base: string | Model, adapter: string | null, options: OracleRunnerOptions = {}): Promise<OracleRunner> {
    const o = parseOptions(OracleRunnerOptionsSchema, options, 'oracle options');
    let model: Model;
    if (typeof base === 'string') {
      try {
        if (!statSync(base).isFile()) throw new Error();
      } catch {
        throw new InputError(`base model not found: ${base}`);
      }
      model = await loadModel(base);
    } else model = base;
    try {
      let handle: NativeAdapter | null = null;
      let settings: OracleSettings | null = null;
      if (adapter !== null) {
        let st;
        try {
          st = statSync(adapter);
        } catch {
          throw new InputError(`adapter not found: ${adapter}`);
        }
        settings = readOracleSettings(adapter);
        if (st.isDirectory()) {
          // The engine loads llama.cpp adapters only; a PEFT folder goes through the converter.
          const tmp = mkdtempSync(join(tmpdir(), 'lro-oracle-'));
          try {
            const gguf = join(tmp, 'adapter.gguf');
            await convertAdapter(adapter, gguf, { baseConfig: model.info.path });
            handle = native().loadAdapter(model.nativeHandle, gguf);
          } finally {
            rmSync(tmp, { recursive: true, force: true });
          }
        } else {
          try {
            handle = native().loadAdapter(model.nativeHandle, isAbsolute(adapter) ? adapter : resolve(adapter));
          } catch (e) {
            throw new InputError(`${adapter}: ${(e as Error).message}`);
          }
        }
      }
      return new OracleRunner(model, typeof base === 'string', handle, settings, o);
    } catch (e) {
      if (typeof base === 'string') model.dispose();
      throw e;
    }
  }

  /** Prompt ids and placeholder positions, as buildOracleInput makes them for training. */
  prompt(q: Pick<OracleQuery, 'layer' | 'question' | 'count'>): { ids: number[]; positions: number[] } {
    const ex: OracleExample = {
      id: 'query',
      task: 'ask',
      layer: q.layer,
      question: q.question,
      answer: '',
      vectors: Array.from({ length: q.count }, () => [0]),
      source: {},
    };
    const r = buildOracleInput(this.model, ex, { withAnswer: false });
    return { ids: r.ids, positions: r.positions };
  }

  /** Answers, one per query, in order; queries are decoded batchSize at a time. */
  async answer(queries: OracleQuery[], options: OracleGenerateOptions & { signal?: AbortSignal } = {}): Promise<OracleAnswer[]> {
    const { signal, ...rest } = options;
    const o = parseOptions(OracleGenerateOptionsSchema, rest, 'oracle generate options');
    const out: OracleAnswer[] = [];
    for (let i = 0; i < queries.length; i += o.batchSize) out.push(...(await this.answerBatch(queries.slice(i, i + o.batchSize), o, signal)));
    return out;
  }

  private async answerBatch(queries: OracleQuery[], o: z.output<typeof OracleGenerateOptionsSchema>, signal?: AbortSignal): Promise<OracleAnswer[]> {
    if (signal?.aborted) throw abortError();
    const width = this.model.info.nEmbd;
    const nVocab = this.model.info.nVocab;
    const prompts = queries.map((q) => {
      if (q.vectors && q.vectors.length !== q.count * width)
        throw new InputError(`oracle query: ${q.vectors.length} vector values for ${q.count} placeholders of width ${width}`);
      return this.prompt(q);
    });
    const maxPrompt = Math.max(...prompts.map((p) => p.ids.length));
    const session: Session = this.model.createSession({ nCtx: maxPrompt + o.maxTokens + 1, threads: this.threads, kvType: this.kvType });
    try {
      if (this.adapter) session.setAdapters([{ adapter: this.adapter, scale: this.adapterScale }]);
      const tokens: number[] = [];
      const seqIds: number[] = [];
      const edits: NativeEdit[] = [];
      const point = injectPoint(this.injectLayer);
      prompts.forEach((p, i) => {
        const offset = tokens.length;
        tokens.push(...p.ids);
        for (let t = 0; t < p.ids.length; t++) seqIds.push(i);
        const v = queries[i].vectors;
        if (v)
          p.positions.forEach((pos, k) =>
            edits.push({ point, row: offset + pos, mode: 'inject', vector: v.subarray(k * width, (k + 1) * width), scale: this.injectCoef }),
          );
      });
      const generated: number[][] = queries.map(() => []);
      const stoppedAt: OracleAnswer['stoppedAt'][] = queries.map(() => 'maxTokens');
      let active = queries.map((_, i) => i);
      // 'last' returns one row per sequence in row order, which is sequence order here.
      let r = await session.eval({ tokens, seqIds, outputRows: 'last', edits, signal });
      for (let step = 0; step < o.maxTokens && active.length > 0; step++) {
        const next: number[] = [];
        active.forEach((i, row) => {
          const id = native().sampleToken(r.logits!, row, nVocab, { temperature: o.temperature, topK: o.topK, topP: o.topP, seed: (o.seed + i) >>> 0, step });
          if (this.model.isEog(id)) stoppedAt[i] = 'eog';
          else {
            generated[i].push(id);
            if (generated[i].length < o.maxTokens) next.push(i);
          }
        });
        active = next;
        if (active.length === 0) break;
        r = await session.eval({ tokens: active.map((i) => generated[i][generated[i].length - 1]), seqIds: active, outputRows: 'last', signal, recycle: r });
      }
      return queries.map((_, i) => ({
        text: this.model.detokenize(generated[i]),
        tokens: generated[i],
        promptTokens: prompts[i].ids,
        positions: prompts[i].positions,
        stoppedAt: stoppedAt[i],
      }));
    } finally {
      session.dispose();
    }
  }

  dispose(): void {
    if (this.ownsModel) this.model.dispose();
  }
}

export const AskOracleOptionsSchema = OracleRunnerOptionsSchema.merge(OracleGenerateOptionsSchema.omit({ batchSize: true }))
  .extend({
    /** The prompt's layer label; default: the layer the vectors were read at (capture, or a resid_post.L key). */
    layer: z.union([z.number().int().min(0), z.string().min(1)]).optional(),
  })
  .strict();
export type AskOracleOptions = z.input<typeof AskOracleOptionsSchema>;

export interface AskOracleResult extends OracleAnswer {
  /** The answer without surrounding whitespace. */
  answer: string;
  layer: number | string;
  vectors: number;
  injectLayer: number;
}

/** One question about one set of vectors; greedy unless a temperature is given. */
export async function askOracle(
  base: string | Model,
  adapter: string | null,
  vectors: OracleVectorSource,
  question: string,
  options: AskOracleOptions & { signal?: AbortSignal } = {},
): Promise<AskOracleResult> {
  const { signal, ...rest } = options;
  const o = parseOptions(AskOracleOptionsSchema, rest, 'ask options');
  const { layer, maxTokens, temperature, topK, topP, seed, ...runnerOptions } = o;
  const runner = await OracleRunner.open(base, adapter, runnerOptions);
  try {
    const v = await resolveVectors(vectors, runner.model.info.nEmbd);
    const label = layer ?? v.layer;
    if (label === null || label === undefined)
      throw new InputError('ask: give the layer the vectors were read at (--layer); it is part of the prompt the oracle was trained on');
    const [a] = await runner.answer([{ layer: label, question, count: v.count, vectors: v.data }], { maxTokens, temperature, topK, topP, seed, signal });
    return { ...a, answer: a.text.trim(), layer: label, vectors: v.count, injectLayer: runner.injectLayer };
  } finally {
    runner.dispose();
  }
}
