// Latent inversion (the seed's "CODI in reverse"): which short text, written after the question,
// puts the model in the state a latent step was in? A beam over the model's own next-token
// distribution: at each length every beam is extended by its most likely next tokens, each
// extension's hidden state at the latent's hook point is compared (cosine) with the latent state,
// and the closest extensions are kept. Extensions run as forked KV-cache sequences, one batch a
// length. Every number (the forward pass, the softmax, the cosine) comes from the engine.
import { z } from 'zod';
import { readCaptureManifest, type CaptureRecordEntry } from './capture-manifest.js';
import { readCaptureTensorF32 } from './capture.js';
import { InputError } from '../core/errors.js';
import type { Model } from '../engine/model.js';
import { native } from '../core/native.js';
import { parseOptions } from '../core/options.js';

export const InvertOptionsSchema = z
  .object({
    /** resid_post layer of the latent state; default the deepest captured. */
    layer: z.number().int().min(0).optional(),
    /** Longest text tried, in tokens. */
    maxTokens: z.number().int().min(1).max(64).default(12),
    /** Beams kept, and next tokens tried per beam, at each length. */
    beam: z.number().int().min(1).max(64).default(8),
    /** Texts returned. */
    top: z.number().int().min(1).max(256).default(8),
    threads: z.number().int().min(0).max(1024).default(0),
  })
  .strict();
export type InvertOptions = z.input<typeof InvertOptionsSchema>;

export interface InversionCandidate {
  text: string;
  tokens: number[];
  /** Cosine between the state after the text and the latent state. */
  cosine: number;
}

export interface InversionResult {
  record: string;
  step: number;
  /** The hook point compared: resid_post.L. */
  point: string;
  /** The question's prompt tokens the texts were appended to. */
  promptTokens: number[];
  /** Best first, distinct texts. */
  candidates: InversionCandidate[];
}

/** The latent state of record's step k at resid_post.L (from the capture), and where to read it. */
async function latentState(dir: string, rec: CaptureRecordEntry, step: number, layer: number | undefined): Promise<{ point: string; vector: Float32Array }> {
  const captured = Object.keys(rec.tensors).filter((p) => /^resid_post\.\d+$/.test(p));
  if (captured.length === 0) throw new InputError(`${dir}: record "${rec.id}" has no resid_post tensor; capture resid_post at the latent positions`);
  const point = layer !== undefined ? `resid_post.${layer}` : captured.sort((a, b) => Number(b.split('.')[1]) - Number(a.split('.')[1]))[0];
  const t = rec.tensors[point];
  if (!t) throw new InputError(`${dir}: record "${rec.id}" has no ${point} (it has ${captured.join(', ')}); choose --layer among these`);
  if (!rec.positionKinds) throw new InputError(`${dir}: record "${rec.id}" is a plain capture (no latent steps); invert needs a capture of the reasoning loop`);
  const latents = rec.positionKinds.flatMap((k, i) => (k === 'latent' ? [i] : []));
  if (step >= latents.length) throw new InputError(`--step ${step}: record "${rec.id}" has ${latents.length} latent steps (0..${latents.length - 1})`);
  const rows = t.positions ?? rec.tokens.map((_, i) => i);
  const row = rows.indexOf(latents[step]);
  if (row < 0) throw new InputError(`${dir}: ${point} of record "${rec.id}" was not captured at latent step ${step} (position ${latents[step]}); capture with --positions latent`);
  const all = await readCaptureTensorF32(dir, t);
  const width = t.shape[1];
  return { point, vector: all.slice(row * width, (row + 1) * width) };
}

/** Inverts latent step `step` of capture record `recordId` (see the file comment). */
export async function invertLatent(model: Model, captureDir: string, recordId: string, step: number, options: InvertOptions & { signal?: AbortSignal } = {}): Promise<InversionResult> {
  const { signal, ...rest } = options;
  const o = parseOptions(InvertOptionsSchema, rest, 'invert options');
  const manifest = await readCaptureManifest(captureDir);
  if (manifest.model.nEmbd !== model.info.nEmbd || manifest.model.nLayer !== model.info.nLayer)
    throw new InputError(`${captureDir} was captured from a model of width ${manifest.model.nEmbd} and ${manifest.model.nLayer} layers; ${model.info.path} has ${model.info.nEmbd} and ${model.info.nLayer}`);
  const rec = manifest.records.find((r) => r.id === recordId);
  if (!rec) throw new InputError(`${captureDir}: no record "${recordId}" (it has ${manifest.records.length}: ${manifest.records.slice(0, 5).map((r) => r.id).join(', ')}${manifest.records.length > 5 ? ', ...' : ''})`);
  if (o.layer !== undefined && o.layer >= model.info.nLayer) throw new InputError(`--layer ${o.layer}: the model has layers 0..${model.info.nLayer - 1}`);
  const { point, vector } = await latentState(captureDir, rec, step, o.layer);
  const promptTokens = rec.tokens.filter((_, i) => rec.positionKinds![i] === 'prompt');
  const candidates = await invertState(model, promptTokens, point, vector, { ...o, signal });
  return { record: recordId, step, point, promptTokens, candidates };
}

/**
 * The texts after promptTokens whose state at `point` (resid_post.L) is closest in cosine to
 * `target`, best first (see the file comment).
 */
export async function invertState(
  model: Model,
  promptTokens: readonly number[],
  point: string,
  target: Float32Array,
  options: InvertOptions & { signal?: AbortSignal } = {},
): Promise<InversionCandidate[]> {
  const { signal, ...rest } = options;
  const o = parseOptions(InvertOptionsSchema, rest, 'invert options');
  if (target.length !== model.info.nEmbd) throw new InputError(`invert: the target state has ${target.length} values, the model's width is ${model.info.nEmbd}`);
  const prompt = Array.from(promptTokens);
  const nVocab = model.info.nVocab;
  const session = model.createSession({ nCtx: prompt.length + o.maxTokens + 1, threads: o.threads });
  try {
    const first = await session.eval({ tokens: prompt, outputRows: 'last', logits: true, signal });
    interface Beam {
      seq: number;
      tokens: number[];
      logits: Float32Array;
    }
    let beams: Beam[] = [{ seq: 0, tokens: [], logits: first.logits! }];
    const free = Array.from({ length: o.beam * (o.beam + 1) }, (_, i) => i + 1);
    const seen = new Map<string, InversionCandidate>();
    for (let depth = 0; depth < o.maxTokens && beams.length; depth++) {
      const ext: { parent: Beam; token: number; seq: number }[] = [];
      for (const b of beams) {
        const s = native().logitStats(b.logits, 0, nVocab, nVocab, o.beam);
        for (const token of s.topIds) {
          // A text ends where the model would end it: no extension past an end-of-generation token.
          if (model.isEog(token)) continue;
          const seq = free.pop()!;
          session.fork(b.seq, seq);
          ext.push({ parent: b, token, seq });
        }
      }
      if (ext.length === 0) break;
      const out = await session.eval({
        tokens: ext.map((e) => e.token),
        seqIds: ext.map((e) => e.seq),
        positions: ext.map(() => prompt.length + depth),
        outputRows: 'all',
        logits: true,
        capture: [point],
        signal,
      });
      const width = model.info.nEmbd;
      const scored = ext.map((e, i) => {
        const h = out.captures[point].subarray(i * width, (i + 1) * width);
        const cosine = native().vectorStats(h, target).cosineToPrev ?? 0;
        return { ...e, row: i, tokens: [...e.parent.tokens, e.token], cosine };
      });
      for (const s of scored) {
        const text = model.detokenize(s.tokens);
        const have = seen.get(text);
        if (!have || have.cosine < s.cosine) seen.set(text, { text, tokens: s.tokens, cosine: s.cosine });
      }
      scored.sort((a, b) => b.cosine - a.cosine || a.seq - b.seq);
      const kept = scored.slice(0, o.beam);
      for (const s of scored.slice(o.beam)) {
        session.remove(s.seq);
        free.push(s.seq);
      }
      for (const b of beams) {
        session.remove(b.seq);
        if (b.seq !== 0) free.push(b.seq);
      }
      // Only the kept beams' next-token rows are copied out of the batch.
      beams = kept.map((s) => ({ seq: s.seq, tokens: s.tokens, logits: out.logits!.slice(s.row * nVocab, (s.row + 1) * nVocab) }));
    }
    return [...seen.values()].sort((a, b) => b.cosine - a.cosine).slice(0, o.top);
  } finally {
    session.dispose();
  }
}
