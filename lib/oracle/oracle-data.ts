// Oracle examples: the interchange format between task generation (make-tasks) and training
// (train-oracle / ask / eval-oracle), and how one example becomes token ids with placeholder
// positions. JSONL, one example a line:
//   {"id", "task", "split", "layer", "question", "answer",
//    "vectors": {"file": "x.safetensors", "key": "...", "rows": [..]} | [[...], ...],
//    "source": {...free-form provenance...}}
// Default prompt (Activation Oracles'): "Layer: {layer}\n" + " ?" per vector + " \n" + question.
// Ids: BOS + prompt, then the answer tokenised on its own, then end-of-sequence; the loss covers
// the answer tokens and the end-of-sequence. Each vector goes to the last token of its " ?".
import { createReadStream } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { InputError } from '../core/errors.js';
import type { Model } from '../engine/model.js';
import { native } from '../core/native.js';
import { readSafetensorsHeader, readSafetensorsTensor, type SafetensorsHeader } from '../core/safetensors.js';

export const VectorRefSchema = z
  .object({
    file: z.string().min(1),
    key: z.string().min(1),
    rows: z.array(z.number().int().min(0)).min(1),
  })
  .strict();
export type VectorRef = z.infer<typeof VectorRefSchema>;

export const OracleExampleSchema = z
  .object({
    id: z.string().min(1),
    task: z.string().min(1),
    split: z.enum(['train', 'val', 'test']).optional(),
    layer: z.union([z.number().int().min(0), z.string()]),
    question: z.string(),
    answer: z.string(),
    vectors: z.union([VectorRefSchema, z.array(z.array(z.number())).min(1)]),
    source: z.record(z.string(), z.unknown()).default({}),
  })
  .passthrough();
export type OracleExample = z.infer<typeof OracleExampleSchema>;

export const PLACEHOLDER = ' ?';

export interface OracleInput {
  /** BOS + prompt + answer + EOS */
  ids: number[];
  /** ids.length entries: true where the token is a loss target (answer tokens and EOS) */
  lossMask: boolean[];
  /** position of each vector's placeholder token, in vector order */
  positions: number[];
  promptLength: number;
}

export function promptText(layer: number | string, nVectors: number, question: string): string {
  return `Layer: ${layer}\n${PLACEHOLDER.repeat(nVectors)} \n${question}`;
}

function vectorCount(ex: OracleExample): number {
  return Array.isArray(ex.vectors) ? ex.vectors.length : ex.vectors.rows.length;
}

/**
 * Token ids, loss mask and placeholder positions of one example. The template's prefix up to the
 * last placeholder is ASCII, so a token's decoded byte length is its span in the text; a
 * placeholder's position is the token holding its '?'.
 */
export function buildOracleInput(model: Model, ex: OracleExample, options: { withAnswer?: boolean } = {}): OracleInput {
  const k = vectorCount(ex);
  const text = promptText(ex.layer, k, ex.question);
  const tok = model.info.tokenizer;
  const promptIds = model.tokenize(text, { addBos: false });
  const bos = tok.bos >= 0 ? [tok.bos] : [];
  const marks: number[] = [];
  const prefix = `Layer: ${ex.layer}\n`;
  for (let i = 0; i < k; i++) marks.push(prefix.length + PLACEHOLDER.length * (i + 1) - 1);
  const positions: number[] = [];
  let offset = 0;
  let m = 0;
  for (let t = 0; t < promptIds.length && m < marks.length; t++) {
    offset += Buffer.byteLength(model.detokenize([promptIds[t]], { renderSpecial: true }), 'utf8');
    while (m < marks.length && marks[m] < offset) {
      positions.push(bos.length + t);
      m++;
    }
  }
  if (positions.length !== k) throw new Error(`example ${ex.id}: could not place ${k} vectors in the prompt`);
  const ids = [...bos, ...promptIds];
  const promptLength = ids.length;
  const lossMask = ids.map(() => false);
  if (options.withAnswer ?? true) {
    const answerIds = model.tokenize(ex.answer, { addBos: false });
    const eos = tok.eos;
    for (const id of [...answerIds, ...(eos >= 0 ? [eos] : [])]) {
      ids.push(id);
      lossMask.push(true);
    }
  }
  return { ids, lossMask, positions, promptLength };
}

/** Reads and validates a JSONL file of examples; errors name the file and line. */
export async function* readOracleExamples(path: string): AsyncGenerator<OracleExample> {
  for await (const { example } of readOracleLines(path)) yield example;
}

/** readOracleExamples with each example's 1-based line number, for errors found after parsing. */
export async function* readOracleLines(path: string): AsyncGenerator<{ example: OracleExample; line: number }> {
  const rl = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const raw of rl) {
      line++;
      if (raw.trim() === '') continue;
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch (e) {
        throw new InputError(`${path}:${line}: not valid JSON (${(e as Error).message})`);
      }
      const r = OracleExampleSchema.safeParse(json);
      if (!r.success) {
        const issue = r.error.issues[0];
        throw new InputError(`${path}:${line}: field '${issue.path.join('.') || '(root)'}': ${issue.message}`);
      }
      yield { example: r.data, line };
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new InputError(`examples file not found: ${path}`);
    throw e;
  } finally {
    rl.close();
  }
}

/** Loads the vectors of examples, caching safetensors headers; files resolve against the examples file's folder. */
export class VectorStore {
  private readonly headers = new Map<string, SafetensorsHeader>();
  private readonly tensors = new Map<string, { data: Float32Array; width: number }>();
  private readonly baseDir: string;

  constructor(examplesPath: string) {
    this.baseDir = dirname(examplesPath);
  }

  /**
   * Validates an example's vectors from the safetensors header alone (key, dtype, width, rows), so
   * a bad reference fails before a long run starts rather than when its batch comes up.
   */
  async check(ex: Pick<OracleExample, 'id' | 'vectors'>, width: number): Promise<void> {
    if (Array.isArray(ex.vectors)) {
      ex.vectors.forEach((v, i) => {
        if (v.length !== width) throw new InputError(`example ${ex.id}: vector ${i} has ${v.length} values, the model width is ${width}`);
      });
      return;
    }
    const ref = ex.vectors;
    const file = isAbsolute(ref.file) ? ref.file : join(this.baseDir, ref.file);
    let h = this.headers.get(file);
    if (!h) {
      try {
        h = await readSafetensorsHeader(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new InputError(`example ${ex.id}: vectors file not found: ${file}`);
        throw new InputError(`example ${ex.id}: ${(e as Error).message}`);
      }
      this.headers.set(file, h);
    }
    const t = h.tensors.get(ref.key);
    if (!t) throw new InputError(`example ${ex.id}: ${file} has no tensor "${ref.key}"`);
    if (t.shape.length !== 2) throw new InputError(`${file}: tensor ${ref.key} must be 2-D [rows, width]`);
    if (!['F32', 'F16', 'BF16'].includes(t.dtype)) throw new InputError(`${file}: tensor ${ref.key} has dtype ${t.dtype}; vectors must be F32, F16 or BF16`);
    if (t.shape[1] !== width) throw new InputError(`${file}: tensor ${ref.key} has width ${t.shape[1]}, the model width is ${width}`);
    for (const r of ref.rows) if (r >= t.shape[0]) throw new InputError(`example ${ex.id}: row ${r} is outside ${ref.key} (${t.shape[0]} rows)`);
  }

  /** [K * width] f32, rows in the example's order. */
  async load(ex: Pick<OracleExample, 'id' | 'vectors'>, width: number): Promise<Float32Array> {
    if (Array.isArray(ex.vectors)) {
      const out = new Float32Array(ex.vectors.length * width);
      ex.vectors.forEach((v, i) => {
        if (v.length !== width) throw new InputError(`example ${ex.id}: vector ${i} has ${v.length} values, the model width is ${width}`);
        out.set(v, i * width);
      });
      return out;
    }
    const ref = ex.vectors;
    const file = isAbsolute(ref.file) ? ref.file : join(this.baseDir, ref.file);
    const key = `${file}\u0000${ref.key}`;
    let t = this.tensors.get(key);
    if (!t) {
      let h = this.headers.get(file);
      if (!h) {
        h = await readSafetensorsHeader(file);
        this.headers.set(file, h);
      }
      const raw = await readSafetensorsTensor(file, ref.key, h);
      if (raw.shape.length !== 2) throw new InputError(`${file}: tensor ${ref.key} must be 2-D [rows, width]`);
      const n = raw.shape[0] * raw.shape[1];
      let data: Float32Array;
      if (raw.dtype === 'F32') data = new Float32Array(raw.data.buffer, raw.data.byteOffset, n);
      else if (raw.dtype === 'F16' || raw.dtype === 'BF16') data = native().dequantize(raw.dtype.toLowerCase(), raw.data, n);
      else throw new InputError(`${file}: tensor ${ref.key} has dtype ${raw.dtype}; vectors must be F32, F16 or BF16`);
      t = { data, width: raw.shape[1] };
      if (this.tensors.size > 64) this.tensors.clear();
      this.tensors.set(key, t);
    }
    if (t.width !== width) throw new InputError(`${file}: tensor ${ref.key} has width ${t.width}, the model width is ${width}`);
    const out = new Float32Array(ref.rows.length * width);
    const nRows = t.data.length / width;
    ref.rows.forEach((r, i) => {
      if (r >= nRows) throw new InputError(`example ${ex.id}: row ${r} is outside ${ref.key} (${nRows} rows)`);
      out.set(t!.data.subarray(r * width, (r + 1) * width), i * width);
    });
    return out;
  }
}
