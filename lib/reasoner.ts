// The latent reasoning loop (CODI / Coconut) with interventions, early decoding and ablation
// branches. Every variant of one question runs as its own KV-cache sequence forked from the
// shared prefix, and all variants at the same stage go through the engine in one batch.
// Policy lives here; every number is computed by the engine.
import { native, type NativeEdit } from './native.js';
import type { Model } from './model.js';
import type { Session } from './session.js';
import { abortError } from './errors.js';
import { z } from 'zod';
import { InputError } from './errors.js';
import { CAPTURE_POINT, EDIT_POINT } from './hook-points.js';
import { buildPrompt, LatentHead, type PromptFormat } from './latent-head.js';

export type PositionKind = 'prompt' | 'bot' | 'latent' | 'eot' | 'answer';

/** Where an intervention acts: the fed embedding (default) or a hook point of the latent position. */
export type InterventionSite = 'input' | string;

export type Intervention =
  | { kind: 'zero'; step: number; at?: InterventionSite }
  | { kind: 'skip'; step: number }
  | { kind: 'noise'; step: number; scale?: number; seed?: number; at?: InterventionSite }
  | { kind: 'mean'; step: number; vector: Float32Array; at?: InterventionSite }
  | { kind: 'swap'; step: number; with: number }
  | { kind: 'patch'; step: number; vector: Float32Array; at?: InterventionSite }
  | {
      kind: 'steer';
      /** hook point, e.g. "resid_post.3" (the same field name as every other intervention's site) */
      at: string;
      vector: Float32Array;
      scale?: number;
      /** 'latent' (default), or explicit positions of the main sequence */
      positions?: 'latent' | number[];
    };

/**
 * The noise of step `step` in a run seeded `runSeed`: one rule for a noise intervention without
 * its own seed and for the trace's noise ablation, so `noise:K` reproduces the ablation of step K.
 */
export function noiseSeed(runSeed: number, step: number): number {
  return (runSeed * 1000003 + step) >>> 0;
}

export type AblationKind = 'zero' | 'skip' | 'noise';

const step = z.number().int().min(0);
const site = z
  .string()
  .refine((v) => v === 'input' || EDIT_POINT.test(v), { message: 'expected "input", embed or a layer hook point such as resid_post.3' });
const vector = z.instanceof(Float32Array, { message: 'expected a Float32Array' });
/** The one schema of an intervention (the library API and the CLI's --intervene both go through it). */
export const InterventionSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('zero'), step, at: site.optional() }).strict(),
  z.object({ kind: z.literal('skip'), step }).strict(),
  z.object({ kind: z.literal('noise'), step, scale: z.number().min(0).finite().optional(), seed: z.number().int().min(0).optional(), at: site.optional() }).strict(),
  z.object({ kind: z.literal('mean'), step, vector, at: site.optional() }).strict(),
  z.object({ kind: z.literal('swap'), step, with: step }).strict(),
  z.object({ kind: z.literal('patch'), step, vector, at: site.optional() }).strict(),
  z
    .object({
      kind: z.literal('steer'),
      at: site,
      vector,
      scale: z.number().finite().optional(),
      positions: z.union([z.literal('latent'), z.array(z.number().int().min(0))]).optional(),
    })
    .strict(),
]);

/** Checks interventions against the run: every field, the steps (0..N-1) and the vector widths (d). */
export function checkInterventions(list: unknown, N: number, d: number): Intervention[] {
  if (!Array.isArray(list)) throw new InputError('interventions: expected an array');
  return list.map((iv, i) => {
    const r = InterventionSchema.safeParse(iv);
    if (!r.success) {
      const issue = r.error.issues[0];
      const field = issue.path.length ? `.${issue.path.join('.')}` : '';
      throw new InputError(`interventions[${i}]${field}: ${issue.message}`);
    }
    const v = r.data as Intervention;
    if ('step' in v && v.step >= N) throw new InputError(`interventions[${i}].step: ${v.step} is outside the latent steps 0..${N - 1}`);
    if (v.kind === 'swap' && v.with >= N) throw new InputError(`interventions[${i}].with: ${v.with} is outside the latent steps 0..${N - 1}`);
    if ('vector' in v && v.vector.length !== d)
      throw new InputError(`interventions[${i}].vector: expected ${d} values (the model's width), got ${v.vector.length}`);
    return v;
  });
}

export interface ReasonOptions {
  latentSteps?: number;
  format?: PromptFormat;
  maxAnswerTokens?: number;
  temperature?: number;
  seed?: number;
  topK?: number;
  topP?: number;
  /** Applied to the main run. */
  interventions?: Intervention[];
  /** Also decode the answer after j = 0..N-1 latent steps (j = N is the main answer). */
  earlyDecode?: boolean;
  /** One branch per (kind, step): the step's fed embedding ablated, later steps recomputed. */
  ablations?: AblationKind[];
  /** Noise scale for noise ablations (relative to the vector's norm). */
  noiseScale?: number;
  /** The answer without latent steps: the prompt without bot, then eot. */
  noReasoning?: boolean;
  lensTopK?: number;
  /** Hook points to capture on the main sequence: embed, resid_pre.L, ..., final_norm, logits, latent_proj. */
  capture?: string[];
  /** Which main-sequence positions to capture: kinds and/or indices (default all). */
  capturePositions?: (PositionKind | number)[];
  signal?: AbortSignal;
}

export interface LensEntry {
  id: number;
  token: string;
  prob: number;
}

export interface StepRecord {
  /** k = 0..N: h_0 is the state at the bot (last prompt) position, h_k at latent position k-1. */
  step: number;
  position: number;
  h: Float32Array;
  /** e_k = head(h_k): latent input k for k < N (as fed, after interventions). */
  e: Float32Array;
  topK: LensEntry[];
  entropy: number;
  norm: number;
  sparsity: number;
  cosineToPrev: number | null;
}

export interface DecodeResult {
  answer: string;
  answerTokens: number[];
  /** End-of-generation token that stopped decoding, or null when maxAnswerTokens did. */
  stopToken: number | null;
}

export interface AblationResult extends DecodeResult {
  step: number;
  /** h_0..h_N of the ablated run */
  h: Float32Array[];
}

export interface CapturedTensor {
  /** main-sequence positions of the rows */
  positions: number[];
  width: number;
  data: Float32Array; // [positions, width]
}

export interface ReasonResult extends DecodeResult {
  promptTokens: number[];
  latentSteps: number;
  /** kind of every main-sequence position (prompt, bot, latents, eot, answer) */
  positionKinds: PositionKind[];
  steps: StepRecord[];
  earlyDecodes: (DecodeResult & { latents: number })[];
  ablations: Partial<Record<AblationKind, AblationResult[]>>;
  noReasoning: DecodeResult | null;
  captures: Record<string, CapturedTensor>;
}

interface Branch {
  seq: number;
  nextPos: number;
  /** ablation: (kind, step) */
  ablation?: { kind: AblationKind; step: number };
  h: Float32Array[];
  e: Float32Array[];
  decode: DecodeResult & { done: boolean };
  early?: number;
}


export class Reasoner {
  readonly model: Model;
  readonly head: LatentHead;
  private readonly session: Session;

  constructor(model: Model, head: LatentHead, session: Session) {
    this.model = model;
    this.head = head;
    this.session = session;
  }

  async reason(question: string | { tokens: number[] }, options: ReasonOptions = {}): Promise<ReasonResult> {
    const model = this.model;
    const hs = this.head.settings;
    const d = model.info.nEmbd;
    const nVocab = model.info.nVocab;
    const N = options.latentSteps ?? hs.steps;
    if (!Number.isInteger(N) || N < 0) throw new TypeError(`latentSteps must be a non-negative integer, got ${N}`);
    const format = (options.format ?? hs.promptFormat) as PromptFormat;
    const maxAnswer = options.maxAnswerTokens ?? 32;
    const lensK = options.lensTopK ?? 10;
    const exclude = Int32Array.from(hs.excludeIds);
    // The logit lens and decoding read only the tokenizer's own ids; the extra CODI ids sit above them.
    const vocabLimit = Math.min(nVocab, ...hs.excludeIds.filter((id) => id >= 0), nVocab);
    const sample = { temperature: options.temperature ?? 0, topK: options.topK ?? 0, topP: options.topP ?? 1, seed: options.seed ?? 0 };
    const signal = options.signal;
    const capture = options.capture ?? [];
    for (const p of capture) if (!CAPTURE_POINT.test(p)) throw new TypeError(`unknown capture point '${p}'`);
    if (hs.eotId < 0) throw new Error(`latent head ${hs.path} has no eot id; cannot end the latent phase`);

    const promptTokens = typeof question === 'string' ? buildPrompt(model, hs, question, format) : question.tokens;
    const n = promptTokens.length;
    if (n === 0) throw new TypeError('the prompt is empty');
    const hasBot = hs.botId >= 0 && promptTokens[n - 1] === hs.botId;
    const interventions = options.interventions ?? [];
    checkInterventions(interventions, N, d);

    const s = this.session;
    for (let seq = 0; seq < 4096 && s.posMax(seq) >= 0; seq++) s.remove(seq);

    // --- capture bookkeeping (main sequence only)
    const kinds: PositionKind[] = [];
    for (let i = 0; i < n; i++) kinds.push(hasBot && i === n - 1 ? 'bot' : 'prompt');
    const wantPos = (p: number, kind: PositionKind) =>
      !options.capturePositions || options.capturePositions.includes(kind) || options.capturePositions.includes(p);
    const engineCaptures = capture.filter((c) => c !== 'logits' && c !== 'latent_proj');
    const rowsOut: Record<string, { positions: number[]; chunks: Float32Array[]; width: number }> = {};
    for (const c of capture) rowsOut[c] = { positions: [], chunks: [], width: c === 'logits' ? nVocab : d };
    const keep = (name: string, pos: number, data: Float32Array) => {
      rowsOut[name].positions.push(pos);
      rowsOut[name].chunks.push(data);
    };

    // Steering edits on the main sequence at explicit positions or latent positions.
    const steerEdits = (positions: number[], rows: number[], kindOf: (p: number) => PositionKind): NativeEdit[] => {
      const edits: NativeEdit[] = [];
      for (const iv of interventions) {
        if (iv.kind !== 'steer') continue;
        positions.forEach((p, i) => {
          const hit = iv.positions === undefined || iv.positions === 'latent' ? kindOf(p) === 'latent' : iv.positions.includes(p);
          if (hit) edits.push({ point: iv.at, row: rows[i], mode: 'add', vector: iv.vector, scale: iv.scale ?? 1 });
        });
      }
      return edits;
    };

    const check = () => {
      if (signal?.aborted) throw abortError();
    };

    // swap(i, j): step i feeds the clean run's e_j and step j its e_i; the clean run goes first.
    let cleanE: Float32Array[] = [];
    if (interventions.some((iv) => iv.kind === 'swap')) {
      for (const iv of interventions)
        if (iv.kind === 'swap' && (iv.with < 0 || iv.with >= N || iv.with === iv.step))
          throw new RangeError(`swap: 'with' must be another step in 0..${N - 1}`);
      const clean = await this.reason({ tokens: promptTokens }, { latentSteps: N, maxAnswerTokens: 0, lensTopK: 1, signal });
      cleanE = clean.steps.map((st) => st.e);
    }

    // --- prompt
    check();
    const promptRows = Array.from({ length: n }, (_, i) => i).filter((i) => i === n - 1 || wantPos(i, kinds[i]));
    const pr = await s.eval({
      tokens: promptTokens,
      positions: Array.from({ length: n }, (_, i) => i),
      outputRows: promptRows,
      logits: true,
      finalNorm: true,
      capture: engineCaptures,
      edits: steerEdits(Array.from({ length: n }, (_, i) => i), Array.from({ length: n }, (_, i) => i), (p) => kinds[p]),
      signal,
    });
    promptRows.forEach((p, i) => {
      if (!wantPos(p, kinds[p])) return;
      for (const c of engineCaptures) keep(c, p, pr.captures[c].subarray(i * d, (i + 1) * d));
      if (capture.includes('logits')) keep('logits', p, pr.logits!.subarray(i * nVocab, (i + 1) * nVocab));
    });
    const lastRow = promptRows.length - 1;
    const h0 = pr.finalNorm!.slice(lastRow * d, (lastRow + 1) * d);
    const lens0 = pr.logits!.slice(lastRow * nVocab, (lastRow + 1) * nVocab);

    // --- branches
    let nextSeq = 1;
    const mkDecode = () => ({ answer: '', answerTokens: [] as number[], stopToken: null as number | null, done: false });
    const main: Branch = { seq: 0, nextPos: n, h: [h0], e: [], decode: mkDecode() };
    const lensLogits: Float32Array[] = [lens0];
    const ablations: Branch[] = [];
    const early: Branch[] = [];
    let noReason: Branch | null = null;
    if (options.noReasoning) {
      noReason = { seq: nextSeq++, nextPos: hasBot ? n - 1 : n, h: [], e: [], decode: mkDecode() };
      s.fork(0, noReason.seq, 0, noReason.nextPos);
    }
    const ablationKinds = options.ablations ?? [];
    const noiseScale = options.noiseScale ?? 1;

    const project = (hs_: Float32Array[]): Float32Array[] => {
      if (hs_.length === 0) return [];
      const z = new Float32Array(hs_.length * d);
      hs_.forEach((h, i) => z.set(h, i * d));
      const e = this.head.project(z);
      return hs_.map((_, i) => e.slice(i * d, (i + 1) * d));
    };

    // The main run's own interventions at step t: on the fed embedding, or as edits at a hook point.
    const mainInput = (t: number, projected: Float32Array): { vec: Float32Array; edits: NativeEdit[] } => {
      let vec = projected;
      const edits: NativeEdit[] = [];
      for (const iv of interventions) {
        if (iv.kind === 'steer') continue;
        if (iv.kind === 'skip' && iv.step >= 1 && iv.step + 1 === t) vec = main.e[iv.step - 1];
        if (iv.kind === 'swap') {
          if (iv.step === t) vec = cleanE[iv.with];
          else if (iv.with === t) vec = cleanE[iv.step];
          continue;
        }
        if (iv.step !== t) continue;
        const at = 'at' in iv ? (iv.at ?? 'input') : 'input';
        if (at !== 'input') {
          if (iv.kind === 'zero') edits.push({ point: at, row: 0, mode: 'replace', vector: new Float32Array(d) });
          else if (iv.kind === 'noise') edits.push({ point: at, row: 0, mode: 'noise', scale: iv.scale ?? 1, seed: iv.seed ?? noiseSeed(sample.seed, iv.step) });
          else if (iv.kind === 'mean' || iv.kind === 'patch') edits.push({ point: at, row: 0, mode: 'replace', vector: iv.vector });
          continue;
        }
        if (iv.kind === 'zero' || iv.kind === 'skip') vec = new Float32Array(d);
        else if (iv.kind === 'noise') vec = native().addScaledNoise(vec, iv.scale ?? 1, iv.seed ?? noiseSeed(sample.seed, iv.step));
        else if (iv.kind === 'mean' || iv.kind === 'patch') vec = iv.vector;
      }
      return { vec, edits };
    };

    for (let t = 0; t < N; t++) {
      check();
      // Forks happen before step t is fed: the main cache then holds positions [0, n + t).
      if (options.earlyDecode) {
        const b: Branch = { seq: nextSeq++, nextPos: n + t, h: [], e: [], decode: mkDecode(), early: t };
        s.fork(0, b.seq, 0, n + t);
        early.push(b);
      }
      for (const kind of ablationKinds) {
        const b: Branch = { seq: nextSeq++, nextPos: n + t, ablation: { kind, step: t }, h: main.h.slice(0, t + 1), e: main.e.slice(0, t), decode: mkDecode() };
        s.fork(0, b.seq, 0, n + t);
        ablations.push(b);
      }
      const active = [main, ...ablations.filter((b) => b.ablation!.step <= t)];
      const proj = project(active.map((b) => b.h[t]));
      const inputs: Float32Array[] = [];
      const edits: NativeEdit[] = [];
      active.forEach((b, i) => {
        if (b === main) {
          const r = mainInput(t, proj[i]);
          inputs.push(r.vec);
          for (const e of r.edits) edits.push({ ...e, row: i });
          edits.push(...steerEdits([n + t], [i], () => 'latent'));
          return;
        }
        const a = b.ablation!;
        let vec = proj[i];
        if (a.step === t) {
          if (a.kind === 'zero' || a.kind === 'skip') vec = new Float32Array(d);
          else if (a.kind === 'noise') vec = native().addScaledNoise(vec, noiseScale, noiseSeed(sample.seed, a.step));
        } else if (a.kind === 'skip' && a.step + 1 === t && a.step >= 1) {
          vec = b.e[a.step - 1];
        }
        inputs.push(vec);
      });
      const emb = new Float32Array(active.length * d);
      inputs.forEach((v, i) => emb.set(v, i * d));
      const wantMain = wantPos(n + t, 'latent');
      const r = await s.eval({
        embeddings: emb,
        seqIds: active.map((b) => b.seq),
        positions: active.map((b) => b.nextPos),
        outputRows: 'all',
        logits: true,
        finalNorm: true,
        capture: wantMain ? engineCaptures : [],
        edits,
        signal,
      });
      active.forEach((b, i) => {
        b.e.push(inputs[i]);
        b.h.push(r.finalNorm!.slice(i * d, (i + 1) * d));
        b.nextPos++;
        if (b === main) {
          lensLogits.push(r.logits!.slice(i * nVocab, (i + 1) * nVocab));
          if (wantMain) {
            for (const c of engineCaptures) keep(c, n + t, r.captures[c].subarray(0, d));
            if (capture.includes('logits')) keep('logits', n + t, r.logits!.subarray(0, nVocab));
            if (capture.includes('latent_proj')) keep('latent_proj', n + t, inputs[0]);
          }
        }
      });
      kinds.push('latent');
    }
    main.e.push(project([main.h[N]])[0]);

    // --- decode every branch in lockstep: eot first, then the answer tokens
    const branches = [main, ...early, ...ablations, ...(noReason ? [noReason] : [])];
    kinds.push('eot');
    let feed = branches.map(() => hs.eotId);
    let live = branches.slice();
    let step = 0;
    while (live.length > 0) {
      check();
      const mainLive = live[0] === main;
      const mainPos = main.nextPos;
      const mainKind: PositionKind = step === 0 ? 'eot' : 'answer';
      const wantMain = mainLive && wantPos(mainPos, mainKind);
      const r = await s.eval({
        tokens: feed,
        seqIds: live.map((b) => b.seq),
        positions: live.map((b) => b.nextPos),
        outputRows: 'all',
        logits: true,
        capture: wantMain ? engineCaptures : [],
        edits: mainLive ? steerEdits([mainPos], [0], () => mainKind) : [],
        signal,
      });
      if (wantMain) {
        for (const c of engineCaptures) keep(c, mainPos, r.captures[c].subarray(0, d));
        if (capture.includes('logits')) keep('logits', mainPos, r.logits!.subarray(0, nVocab));
      }
      const nextFeed: number[] = [];
      const nextLive: Branch[] = [];
      live.forEach((b, i) => {
        b.nextPos++;
        if (b.decode.answerTokens.length >= maxAnswer) {
          b.decode.done = true; // fed only so that captures cover the last answer token
          return;
        }
        const id = native().sampleToken(r.logits!, i, nVocab, { ...sample, step, exclude });
        if (model.isEog(id)) {
          b.decode.stopToken = id;
          b.decode.done = true;
          return;
        }
        b.decode.answerTokens.push(id);
        // The last allowed token is still fed when the main run captures, so its states exist.
        if (b.decode.answerTokens.length >= maxAnswer && !(b === main && capture.length > 0)) {
          b.decode.done = true;
          return;
        }
        nextFeed.push(id);
        nextLive.push(b);
      });
      feed = nextFeed;
      live = nextLive;
      step++;
    }
    for (const b of branches) b.decode.answer = model.detokenize(b.decode.answerTokens);
    // kinds: prompt..., latents, eot, then one 'answer' per fed answer token
    kinds.length = n + N + 1;
    const fedAnswers = main.nextPos - (n + N + 1);
    for (let i = 0; i < fedAnswers; i++) kinds.push('answer');

    // --- step records: logit lens of h_k = the output head on h_k (the logits at its position)
    const steps: StepRecord[] = [];
    for (let k = 0; k <= N; k++) {
      const ls = native().logitStats(lensLogits[k], 0, nVocab, vocabLimit, lensK);
      const vs = native().vectorStats(main.h[k], k > 0 ? main.h[k - 1] : null);
      steps.push({
        step: k,
        position: n - 1 + k,
        h: main.h[k],
        e: main.e[k],
        topK: Array.from(ls.topIds).map((id, i) => ({ id, token: model.tokenText(id), prob: ls.topProbs[i] })),
        entropy: ls.entropy,
        norm: vs.norm,
        sparsity: vs.sparsity,
        cosineToPrev: vs.cosineToPrev,
      });
    }

    const captures: Record<string, CapturedTensor> = {};
    for (const c of capture) {
      const o = rowsOut[c];
      const order = o.positions.map((p, i) => [p, i] as const).sort((a, b) => a[0] - b[0]);
      const data = new Float32Array(order.length * o.width);
      order.forEach(([, i], j) => data.set(o.chunks[i], j * o.width));
      captures[c] = { positions: order.map(([p]) => p), width: o.width, data };
    }
    const strip = (b: Branch): DecodeResult => ({ answer: b.decode.answer, answerTokens: b.decode.answerTokens, stopToken: b.decode.stopToken });
    const abl: Partial<Record<AblationKind, AblationResult[]>> = {};
    for (const b of ablations) (abl[b.ablation!.kind] ??= []).push({ ...strip(b), step: b.ablation!.step, h: b.h });
    const earlyDecodes = early.map((b) => ({ ...strip(b), latents: b.early! }));
    if (options.earlyDecode) earlyDecodes.push({ ...strip(main), latents: N });
    for (let seq = 0; seq < nextSeq; seq++) s.remove(seq);
    return {
      promptTokens,
      latentSteps: N,
      positionKinds: kinds,
      steps,
      ...strip(main),
      earlyDecodes,
      ablations: abl,
      noReasoning: noReason ? strip(noReason) : null,
      captures,
    };
  }
}
