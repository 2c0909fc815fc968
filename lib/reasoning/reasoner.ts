// The latent reasoning loop (CODI / Coconut) with interventions, early decoding and ablation
// branches. Every variant of one question runs as its own KV-cache sequence forked from the
// shared prefix, and all variants at the same stage go through the engine in one batch.
// Policy lives here; every number is computed by the engine.
import { native, type NativeEdit } from '../core/native.js';
import type { Model } from '../engine/model.js';
import type { Session } from '../engine/session.js';
import { abortError, InputError } from '../core/errors.js';
import { z } from 'zod';
import { CAPTURE_POINT, EDIT_POINT } from '../core/hook-points.js';
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

const newDecode = () => ({ answer: '', answerTokens: [] as number[], stopToken: null as number | null, done: false });
const strip = (b: Branch): DecodeResult => ({ answer: b.decode.answer, answerTokens: b.decode.answerTokens, stopToken: b.decode.stopToken });

export class Reasoner {
  readonly model: Model;
  readonly head: LatentHead;
  private readonly session: Session;

  constructor(model: Model, head: LatentHead, session: Session) {
    this.model = model;
    this.head = head;
    this.session = session;
  }

  /** One question through its phases: the prompt, N latent steps (every branch batched), then decoding. */
  async reason(question: string | { tokens: number[] }, options: ReasonOptions = {}): Promise<ReasonResult> {
    const run = new ReasonRun(this.model, this.head, this.session, question, options);
    // swap(i, j): step i feeds the clean run's e_j and step j its e_i; the clean run goes first.
    if (run.swaps) {
      const clean = await this.reason({ tokens: run.promptTokens }, { latentSteps: run.N, maxAnswerTokens: 0, lensTopK: 1, signal: options.signal });
      run.cleanE = clean.steps.map((st) => st.e);
    }
    await run.prompt();
    for (let t = 0; t < run.N; t++) await run.latentStep(t);
    await run.decode();
    return run.result();
  }
}

/** The state of one Reasoner.reason call, phase by phase. */
class ReasonRun {
  readonly N: number;
  readonly promptTokens: number[];
  readonly swaps: boolean;
  cleanE: Float32Array[] = [];

  private readonly hs: LatentHead['settings'];
  private readonly d: number;
  private readonly nVocab: number;
  private readonly n: number;
  private readonly hasBot: boolean;
  private readonly maxAnswer: number;
  private readonly lensK: number;
  private readonly exclude: Int32Array;
  /** The logit lens and decoding read only the tokenizer's own ids; the extra CODI ids sit above them. */
  private readonly vocabLimit: number;
  private readonly sample: { temperature: number; topK: number; topP: number; seed: number };
  private readonly signal: AbortSignal | undefined;
  private readonly capture: string[];
  private readonly engineCaptures: string[];
  private readonly interventions: Intervention[];
  /** kind of every main-sequence position so far */
  private readonly kinds: PositionKind[] = [];
  private readonly rowsOut: Record<string, { positions: number[]; chunks: Float32Array[]; width: number }> = {};
  private main!: Branch;
  private readonly lensLogits: Float32Array[] = [];
  private readonly ablations: Branch[] = [];
  private readonly early: Branch[] = [];
  private noReason: Branch | null = null;
  private nextSeq = 1;

  constructor(
    private readonly model: Model,
    private readonly head: LatentHead,
    private readonly s: Session,
    question: string | { tokens: number[] },
    private readonly options: ReasonOptions,
  ) {
    const hs = (this.hs = head.settings);
    this.d = model.info.nEmbd;
    this.nVocab = model.info.nVocab;
    const N = (this.N = options.latentSteps ?? hs.steps);
    if (!Number.isInteger(N) || N < 0) throw new TypeError(`latentSteps must be a non-negative integer, got ${N}`);
    const format = (options.format ?? hs.promptFormat) as PromptFormat;
    this.maxAnswer = options.maxAnswerTokens ?? 32;
    this.lensK = options.lensTopK ?? 10;
    this.exclude = Int32Array.from(hs.excludeIds);
    this.vocabLimit = Math.min(this.nVocab, ...hs.excludeIds.filter((id) => id >= 0), this.nVocab);
    this.sample = { temperature: options.temperature ?? 0, topK: options.topK ?? 0, topP: options.topP ?? 1, seed: options.seed ?? 0 };
    this.signal = options.signal;
    this.capture = options.capture ?? [];
    for (const p of this.capture) if (!CAPTURE_POINT.test(p)) throw new TypeError(`unknown capture point '${p}'`);
    if (hs.eotId < 0) throw new Error(`latent head ${hs.path} has no eot id; cannot end the latent phase`);

    this.promptTokens = typeof question === 'string' ? buildPrompt(model, hs, question, format) : question.tokens;
    const n = (this.n = this.promptTokens.length);
    if (n === 0) throw new TypeError('the prompt is empty');
    this.hasBot = hs.botId >= 0 && this.promptTokens[n - 1] === hs.botId;
    this.interventions = options.interventions ?? [];
    checkInterventions(this.interventions, N, this.d);
    this.swaps = this.interventions.some((iv) => iv.kind === 'swap');
    if (this.swaps)
      for (const iv of this.interventions)
        if (iv.kind === 'swap' && (iv.with < 0 || iv.with >= N || iv.with === iv.step))
          throw new RangeError(`swap: 'with' must be another step in 0..${N - 1}`);

    for (let seq = 0; seq < 4096 && s.posMax(seq) >= 0; seq++) s.remove(seq);
    for (let i = 0; i < n; i++) this.kinds.push(this.hasBot && i === n - 1 ? 'bot' : 'prompt');
    this.engineCaptures = this.capture.filter((c) => c !== 'logits' && c !== 'latent_proj');
    for (const c of this.capture) this.rowsOut[c] = { positions: [], chunks: [], width: c === 'logits' ? this.nVocab : this.d };
  }

  // --- capture bookkeeping (main sequence only)
  private wantPos(p: number, kind: PositionKind): boolean {
    const cp = this.options.capturePositions;
    return !cp || cp.includes(kind) || cp.includes(p);
  }

  private keep(name: string, pos: number, data: Float32Array): void {
    this.rowsOut[name].positions.push(pos);
    this.rowsOut[name].chunks.push(data);
  }

  /** The main row i's engine captures and logits at main-sequence position pos. */
  private keepRow(pos: number, captures: Record<string, Float32Array>, logits: Float32Array | undefined, i: number): void {
    const { d, nVocab } = this;
    for (const c of this.engineCaptures) this.keep(c, pos, captures[c].subarray(i * d, (i + 1) * d));
    if (this.capture.includes('logits')) this.keep('logits', pos, logits!.subarray(i * nVocab, (i + 1) * nVocab));
  }

  /** Steering edits on the main sequence at explicit positions or latent positions. */
  private steerEdits(positions: number[], rows: number[], kindOf: (p: number) => PositionKind): NativeEdit[] {
    const edits: NativeEdit[] = [];
    for (const iv of this.interventions) {
      if (iv.kind !== 'steer') continue;
      positions.forEach((p, i) => {
        const hit = iv.positions === undefined || iv.positions === 'latent' ? kindOf(p) === 'latent' : iv.positions.includes(p);
        if (hit) edits.push({ point: iv.at, row: rows[i], mode: 'add', vector: iv.vector, scale: iv.scale ?? 1 });
      });
    }
    return edits;
  }

  private check(): void {
    if (this.signal?.aborted) throw abortError();
  }

  private project(hs_: Float32Array[]): Float32Array[] {
    const d = this.d;
    if (hs_.length === 0) return [];
    const z = new Float32Array(hs_.length * d);
    hs_.forEach((h, i) => z.set(h, i * d));
    const e = this.head.project(z);
    return hs_.map((_, i) => e.slice(i * d, (i + 1) * d));
  }

  /** Phase 1: the prompt; h_0 and the first lens row come from its last position. */
  async prompt(): Promise<void> {
    const { n, d, nVocab, kinds } = this;
    this.check();
    const all = Array.from({ length: n }, (_, i) => i);
    const promptRows = all.filter((i) => i === n - 1 || this.wantPos(i, kinds[i]));
    const pr = await this.s.eval({
      tokens: this.promptTokens,
      positions: all,
      outputRows: promptRows,
      logits: true,
      finalNorm: true,
      capture: this.engineCaptures,
      edits: this.steerEdits(all, all, (p) => kinds[p]),
      signal: this.signal,
    });
    promptRows.forEach((p, i) => {
      if (this.wantPos(p, kinds[p])) this.keepRow(p, pr.captures, pr.logits, i);
    });
    const lastRow = promptRows.length - 1;
    this.main = { seq: 0, nextPos: n, h: [pr.finalNorm!.slice(lastRow * d, (lastRow + 1) * d)], e: [], decode: newDecode() };
    this.lensLogits.push(pr.logits!.slice(lastRow * nVocab, (lastRow + 1) * nVocab));
    if (this.options.noReasoning) {
      this.noReason = { seq: this.nextSeq++, nextPos: this.hasBot ? n - 1 : n, h: [], e: [], decode: newDecode() };
      this.s.fork(0, this.noReason.seq, 0, this.noReason.nextPos);
    }
  }

  /** The main run's own interventions at step t: on the fed embedding, or as edits at a hook point. */
  private mainInput(t: number, projected: Float32Array): { vec: Float32Array; edits: NativeEdit[] } {
    const d = this.d;
    let vec = projected;
    const edits: NativeEdit[] = [];
    for (const iv of this.interventions) {
      if (iv.kind === 'steer') continue;
      if (iv.kind === 'skip' && iv.step >= 1 && iv.step + 1 === t) vec = this.main.e[iv.step - 1];
      if (iv.kind === 'swap') {
        if (iv.step === t) vec = this.cleanE[iv.with];
        else if (iv.with === t) vec = this.cleanE[iv.step];
        continue;
      }
      if (iv.step !== t) continue;
      const at = 'at' in iv ? (iv.at ?? 'input') : 'input';
      if (at !== 'input') {
        if (iv.kind === 'zero') edits.push({ point: at, row: 0, mode: 'replace', vector: new Float32Array(d) });
        else if (iv.kind === 'noise') edits.push({ point: at, row: 0, mode: 'noise', scale: iv.scale ?? 1, seed: iv.seed ?? noiseSeed(this.sample.seed, iv.step) });
        else if (iv.kind === 'mean' || iv.kind === 'patch') edits.push({ point: at, row: 0, mode: 'replace', vector: iv.vector });
        continue;
      }
      if (iv.kind === 'zero' || iv.kind === 'skip') vec = new Float32Array(d);
      else if (iv.kind === 'noise') vec = native().addScaledNoise(vec, iv.scale ?? 1, iv.seed ?? noiseSeed(this.sample.seed, iv.step));
      else if (iv.kind === 'mean' || iv.kind === 'patch') vec = iv.vector;
    }
    return { vec, edits };
  }

  /** An ablation branch's input at step t: its own step ablated, the others as projected. */
  private ablatedInput(b: Branch, t: number, projected: Float32Array): Float32Array {
    const a = b.ablation!;
    if (a.step === t) {
      if (a.kind === 'zero' || a.kind === 'skip') return new Float32Array(this.d);
      if (a.kind === 'noise') return native().addScaledNoise(projected, this.options.noiseScale ?? 1, noiseSeed(this.sample.seed, a.step));
    } else if (a.kind === 'skip' && a.step + 1 === t && a.step >= 1) {
      return b.e[a.step - 1];
    }
    return projected;
  }

  /** Phase 2, step t: fork the branches that start here, then feed every active branch's input in one batch. */
  async latentStep(t: number): Promise<void> {
    const { n, d, nVocab, main, s } = this;
    this.check();
    // Forks happen before step t is fed: the main cache then holds positions [0, n + t).
    if (this.options.earlyDecode) {
      const b: Branch = { seq: this.nextSeq++, nextPos: n + t, h: [], e: [], decode: newDecode(), early: t };
      s.fork(0, b.seq, 0, n + t);
      this.early.push(b);
    }
    for (const kind of this.options.ablations ?? []) {
      const b: Branch = { seq: this.nextSeq++, nextPos: n + t, ablation: { kind, step: t }, h: main.h.slice(0, t + 1), e: main.e.slice(0, t), decode: newDecode() };
      s.fork(0, b.seq, 0, n + t);
      this.ablations.push(b);
    }
    const active = [main, ...this.ablations.filter((b) => b.ablation!.step <= t)];
    const proj = this.project(active.map((b) => b.h[t]));
    const inputs: Float32Array[] = [];
    const edits: NativeEdit[] = [];
    active.forEach((b, i) => {
      if (b !== main) {
        inputs.push(this.ablatedInput(b, t, proj[i]));
        return;
      }
      const r = this.mainInput(t, proj[i]);
      inputs.push(r.vec);
      for (const e of r.edits) edits.push({ ...e, row: i });
      edits.push(...this.steerEdits([n + t], [i], () => 'latent'));
    });
    const emb = new Float32Array(active.length * d);
    inputs.forEach((v, i) => emb.set(v, i * d));
    const wantMain = this.wantPos(n + t, 'latent');
    const r = await s.eval({
      embeddings: emb,
      seqIds: active.map((b) => b.seq),
      positions: active.map((b) => b.nextPos),
      outputRows: 'all',
      logits: true,
      finalNorm: true,
      capture: wantMain ? this.engineCaptures : [],
      edits,
      signal: this.signal,
    });
    active.forEach((b, i) => {
      b.e.push(inputs[i]);
      b.h.push(r.finalNorm!.slice(i * d, (i + 1) * d));
      b.nextPos++;
    });
    // The main branch is row 0.
    this.lensLogits.push(r.logits!.slice(0, nVocab));
    if (wantMain) {
      this.keepRow(n + t, r.captures, r.logits, 0);
      if (this.capture.includes('latent_proj')) this.keep('latent_proj', n + t, inputs[0]);
    }
    this.kinds.push('latent');
  }

  /** Phase 3: every branch decodes in lockstep, eot first, then the answer tokens. */
  async decode(): Promise<void> {
    const { main, s, hs } = this;
    main.e.push(this.project([main.h[this.N]])[0]);
    const branches = this.branches();
    this.kinds.push('eot');
    let feed = branches.map(() => hs.eotId);
    let live = branches.slice();
    let step = 0;
    while (live.length > 0) {
      this.check();
      const mainLive = live[0] === main;
      const mainPos = main.nextPos;
      const mainKind: PositionKind = step === 0 ? 'eot' : 'answer';
      const wantMain = mainLive && this.wantPos(mainPos, mainKind);
      const r = await s.eval({
        tokens: feed,
        seqIds: live.map((b) => b.seq),
        positions: live.map((b) => b.nextPos),
        outputRows: 'all',
        logits: true,
        capture: wantMain ? this.engineCaptures : [],
        edits: mainLive ? this.steerEdits([mainPos], [0], () => mainKind) : [],
        signal: this.signal,
      });
      if (wantMain) this.keepRow(mainPos, r.captures, r.logits, 0);
      const nextFeed: number[] = [];
      const nextLive: Branch[] = [];
      live.forEach((b, i) => {
        const id = this.next(b, r.logits!, i, step);
        if (id === null) return;
        nextFeed.push(id);
        nextLive.push(b);
      });
      feed = nextFeed;
      live = nextLive;
      step++;
    }
    for (const b of branches) b.decode.answer = this.model.detokenize(b.decode.answerTokens);
    // kinds: prompt..., latents, eot, then one 'answer' per fed answer token
    this.kinds.length = this.n + this.N + 1;
    const fedAnswers = main.nextPos - (this.n + this.N + 1);
    for (let i = 0; i < fedAnswers; i++) this.kinds.push('answer');
  }

  /** Branch b's next answer token from row i of the logits, or null when it is done. */
  private next(b: Branch, logits: Float32Array, i: number, step: number): number | null {
    b.nextPos++;
    if (b.decode.answerTokens.length >= this.maxAnswer) {
      b.decode.done = true; // fed only so that captures cover the last answer token
      return null;
    }
    const id = native().sampleToken(logits, i, this.nVocab, { ...this.sample, step, exclude: this.exclude });
    if (this.model.isEog(id)) {
      b.decode.stopToken = id;
      b.decode.done = true;
      return null;
    }
    b.decode.answerTokens.push(id);
    // The last allowed token is still fed when the main run captures, so its states exist.
    if (b.decode.answerTokens.length >= this.maxAnswer && !(b === this.main && this.capture.length > 0)) {
      b.decode.done = true;
      return null;
    }
    return id;
  }

  private branches(): Branch[] {
    return [this.main, ...this.early, ...this.ablations, ...(this.noReason ? [this.noReason] : [])];
  }

  /** Step records: the logit lens of h_k is the output head on h_k (the logits at its position). */
  private stepRecords(): StepRecord[] {
    const { main, nVocab } = this;
    const steps: StepRecord[] = [];
    for (let k = 0; k <= this.N; k++) {
      const ls = native().logitStats(this.lensLogits[k], 0, nVocab, this.vocabLimit, this.lensK);
      const vs = native().vectorStats(main.h[k], k > 0 ? main.h[k - 1] : null);
      steps.push({
        step: k,
        position: this.n - 1 + k,
        h: main.h[k],
        e: main.e[k],
        topK: Array.from(ls.topIds).map((id, i) => ({ id, token: this.model.tokenText(id), prob: ls.topProbs[i] })),
        entropy: ls.entropy,
        norm: vs.norm,
        sparsity: vs.sparsity,
        cosineToPrev: vs.cosineToPrev,
      });
    }
    return steps;
  }

  private captures(): Record<string, CapturedTensor> {
    const captures: Record<string, CapturedTensor> = {};
    for (const c of this.capture) {
      const o = this.rowsOut[c];
      const order = o.positions.map((p, i) => [p, i] as const).sort((a, b) => a[0] - b[0]);
      const data = new Float32Array(order.length * o.width);
      order.forEach(([, i], j) => data.set(o.chunks[i], j * o.width));
      captures[c] = { positions: order.map(([p]) => p), width: o.width, data };
    }
    return captures;
  }

  /** Phase 4: the result; the branches' sequences are removed from the session. */
  result(): ReasonResult {
    const abl: Partial<Record<AblationKind, AblationResult[]>> = {};
    for (const b of this.ablations) (abl[b.ablation!.kind] ??= []).push({ ...strip(b), step: b.ablation!.step, h: b.h });
    const earlyDecodes = this.early.map((b) => ({ ...strip(b), latents: b.early! }));
    if (this.options.earlyDecode) earlyDecodes.push({ ...strip(this.main), latents: this.N });
    const result: ReasonResult = {
      promptTokens: this.promptTokens,
      latentSteps: this.N,
      positionKinds: this.kinds,
      steps: this.stepRecords(),
      ...strip(this.main),
      earlyDecodes,
      ablations: abl,
      noReasoning: this.noReason ? strip(this.noReason) : null,
      captures: this.captures(),
    };
    for (let seq = 0; seq < this.nextSeq; seq++) this.s.remove(seq);
    return result;
  }
}
