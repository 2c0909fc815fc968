// The model runs some tasks need beyond the trace and the capture, done by make-tasks (it has
// the model and knows which tasks are selected; the trace and capture stay task-agnostic):
//   readout         the output head's top token on each latent step vector (logit_lens labels,
//                   the logit-lens baseline of early_decode and answer_value)
//   tamper          the question rerun with two steps' inputs swapped, and with one step noised
//   counterfactual  the question rerun with one of its numbers changed, and how far each step moved
// Reruns' vectors go to OUT/extra/ as a capture folder (CaptureSink: shards + manifest), their
// facts to OUT/extra/facts.jsonl, one line per question. A rerun of make-tasks continues after the
// questions already done, so an interrupted run loses at most the question in flight.
import { createReadStream, existsSync } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../core/atomic-file.js';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { readCaptureManifest, type CaptureManifest, type CaptureRecordEntry, type CaptureTensor } from '../capture/capture-manifest.js';
import { readCaptureTensorF32, reasoningRecordEntry, reasoningTensors } from '../capture/capture.js';
import { CaptureSink } from '../capture/capture-sink.js';
import { abortError, InputError } from '../core/errors.js';
import type { LatentHead } from '../reasoning/latent-head.js';
import type { Model } from '../engine/model.js';
import { native } from '../core/native.js';
import { reasoningContext } from '../reasoning/reason.js';
import { Reasoner, type Intervention } from '../reasoning/reasoner.js';
import { type Session } from '../engine/session.js';
import type { TraceRecord } from './inputs.js';
import { numbersIn } from './labels.js';
import { unitHash } from './split.js';
import type { CounterfactualRun, QuestionExtras, Readout, TamperRun } from './types.js';

export const EXTRA_KINDS = ['readout', 'tamper', 'counterfactual'] as const;
export type ExtraKind = (typeof EXTRA_KINDS)[number];
export const EXTRA_DIR = 'extra';
export const FACTS_FILE = 'facts.jsonl';
export const EXTRA_SETTINGS_FILE = 'settings.json';

export interface ExtrasQuestion {
  id: string;
  trace: TraceRecord;
  record: CaptureRecordEntry;
  latentPositions: number[];
}

export interface ExtrasOptions {
  /** make-tasks' output folder; the extras live in OUT/extra. */
  out: string;
  captureDir: string;
  manifest: CaptureManifest;
  layers: number[];
  kinds: ExtraKind[];
  seed: number;
  /** Noise of the tamper runs, relative to the input's norm. */
  tamperNoise: number;
  threads: number;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; skipped: number; total: number; id: string; elapsedMs: number }) => void;
}

/** The facts line of one question; an absent field was not run, null means it does not apply. */
interface FactsLine {
  id: string;
  readout?: Record<string, Readout[]>;
  tamper?: TamperRun[];
  counterfactual?: CounterfactualRun | null;
}

export const pointOf = (layer: number): string => `resid_post.${layer}`;

/** Rows of a captured tensor at the given main-sequence positions, one Float32Array each. */
export async function tensorRows(dir: string, t: CaptureTensor, positions: readonly number[]): Promise<Float32Array[]> {
  const data = await readCaptureTensorF32(dir, t);
  const width = t.shape[1];
  return positions.map((p) => {
    const row = t.positions ? t.positions.indexOf(p) : p;
    if (row < 0 || row >= t.shape[0]) throw new InputError(`${dir}: tensor ${t.key} has no row for position ${p}`);
    return data.slice(row * width, (row + 1) * width);
  });
}

/** Ids the output head may produce: the tokenizer's own, below the extra CODI ids (as the Reasoner's lens). */
export function readoutVocabLimit(model: Model, head: LatentHead | null): number {
  const n = model.info.nVocab;
  return Math.min(n, ...(head?.settings.excludeIds ?? []).filter((id) => id >= 0), n);
}

/**
 * The output head applied to arbitrary residual vectors: each vector replaces the last block's
 * output of one row of a dummy batch, so the engine's final norm and unembedding read it exactly
 * as they read the model's own states.
 */
export async function headReadout(session: Session, model: Model, vectors: readonly Float32Array[], vocabLimit: number, signal?: AbortSignal): Promise<Readout[]> {
  const info = model.info;
  const point = `resid_post.${info.nLayer - 1}`;
  const out: Readout[] = [];
  const CHUNK = 64;
  for (let i = 0; i < vectors.length; i += CHUNK) {
    const part = vectors.slice(i, i + CHUNK);
    const filler = Math.max(0, info.tokenizer.bos);
    try {
      const r = await session.eval({
        tokens: part.map(() => filler),
        positions: part.map((_, j) => j),
        outputRows: 'all',
        logits: true,
        edits: part.map((v, j) => ({ point, row: j, mode: 'replace' as const, vector: v })),
        signal,
      });
      part.forEach((_, j) => {
        const id = native().logitStats(r.logits!, j, info.nVocab, vocabLimit, 1).topIds[0];
        out.push({ id, token: model.tokenText(id) });
      });
    } finally {
      session.remove(0);
    }
  }
  return out;
}

/** The number of the question to change and what to write instead; null when it has none. */
export function perturbQuestion(question: string, seed: number, id: string): { which: number; from: string; to: string; question: string } | null {
  const nums = numbersIn(question);
  if (nums.length === 0) return null;
  const which = Math.floor(unitHash(seed, `${id}/cf/which`) * nums.length);
  const n = nums[which];
  const v = Number(n.value);
  // A small positive change keeps the problem sensible (no negative counts); decimals move by 1.
  const delta = 1 + Math.floor(unitHash(seed, `${id}/cf/delta`) * 9);
  const to = Number.isInteger(v) ? String(v + delta) : String(Math.round((v + 1) * 1e6) / 1e6);
  return { which, from: n.text, to, question: question.slice(0, n.index) + to + question.slice(n.index + n.text.length) };
}

/** The swap and noise reruns of a question with N latent steps (no swap below 2 steps). */
export function tamperPlan(n: number, seed: number, id: string, noise: number): { kind: 'swap' | 'noise'; steps: number[]; seed?: number; scale?: number }[] {
  if (n < 2) return [];
  const i = Math.floor(unitHash(seed, `${id}/swap/i`) * n);
  let j = Math.floor(unitHash(seed, `${id}/swap/j`) * (n - 1));
  if (j >= i) j++;
  const k = Math.floor(unitHash(seed, `${id}/noise/k`) * n);
  return [
    { kind: 'swap', steps: [Math.min(i, j), Math.max(i, j)] },
    { kind: 'noise', steps: [k], scale: noise, seed: Math.floor(unitHash(seed, `${id}/noise/seed`) * 0x7fffffff) },
  ];
}

async function readFacts(path: string): Promise<Map<string, FactsLine>> {
  const out = new Map<string, FactsLine>();
  if (!existsSync(path)) return out;
  const rl = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  for await (const raw of rl) {
    if (raw.trim() === '') continue;
    try {
      const l = JSON.parse(raw) as FactsLine;
      // Later lines complete earlier ones (a resumed run adds the kinds it was missing).
      if (typeof l.id === 'string') out.set(l.id, { ...out.get(l.id), ...l });
    } catch {
      /* a line cut off by a crash: that question is redone */
    }
  }
  return out;
}

function settingsFor(o: ExtrasOptions, model: Model): Record<string, unknown> {
  return { layers: o.layers, seed: o.seed, tamperNoise: o.tamperNoise, model: { nEmbd: model.info.nEmbd, nLayer: model.info.nLayer, nVocab: model.info.nVocab } };
}

/**
 * Runs the extras of every question (those already in OUT/extra are kept) and returns them by
 * question id. Records of the extra capture are named "<question id>~swap", "~noise", "~cf".
 */
export async function runExtras(model: Model, head: LatentHead, questions: readonly ExtrasQuestion[], o: ExtrasOptions): Promise<Map<string, QuestionExtras>> {
  const dir = join(o.out, EXTRA_DIR);
  const result = new Map<string, QuestionExtras>();
  if (o.kinds.length === 0) return result;
  const settingsPath = join(dir, EXTRA_SETTINGS_FILE);
  const settings = settingsFor(o, model);
  if (existsSync(settingsPath)) {
    let prev: Record<string, unknown>;
    try {
      prev = JSON.parse(await readFile(settingsPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new InputError(`${settingsPath}: not valid JSON (${(e as Error).message}); remove ${dir} to redo the extra runs`);
    }
    for (const k of Object.keys(settings))
      if (JSON.stringify(prev[k]) !== JSON.stringify(settings[k]))
        throw new InputError(`${settingsPath}: the extra runs there were made with another ${k} (${JSON.stringify(prev[k])}, now ${JSON.stringify(settings[k])}); remove ${dir} or choose another --out`);
  }
  const reasoning = o.manifest.settings.reasoning!;
  const points = o.layers.map(pointOf);
  const sink = await CaptureSink.open({
    out: dir,
    resume: true,
    shardBytes: 64 * 1024 * 1024,
    flushIntervalMs: 30_000,
    model: { ...o.manifest.model },
    settings: {
      points,
      dtype: o.manifest.settings.dtype,
      addBos: true,
      parseSpecial: false,
      batchSize: 512,
      kvType: o.manifest.settings.kvType,
      positions: ['latent'],
      reasoning,
    },
  });
  // Atomically: a stop while it is written must not leave a cut-short file the rerun cannot read.
  await writeFileAtomic(settingsPath, JSON.stringify(settings, null, 1) + '\n');
  const factsPath = join(dir, FACTS_FILE);
  const facts = await readFacts(factsPath);
  const session = model.createSession({ nCtx: reasoningContext(model), threads: o.threads });
  const reasoner = new Reasoner(model, head, session);
  const vocabLimit = readoutVocabLimit(model, head);
  const runOpts = { latentSteps: reasoning.latentSteps, maxAnswerTokens: reasoning.maxAnswerTokens, temperature: reasoning.temperature, seed: reasoning.seed, lensTopK: 1 };
  const started = Date.now();
  let done = 0;
  let skipped = 0;
  try {
    for (const q of questions) {
      if (o.signal?.aborted) throw abortError();
      const have = facts.get(q.id) ?? { id: q.id };
      const missing = o.kinds.filter((k) => have[k] === undefined);
      // Reruns whose vectors the sink lost (facts written, killed before the shard) are redone.
      const lost = new Set<ExtraKind>();
      if (o.kinds.includes('tamper') && have.tamper?.some((t) => !sink.has(t.record))) lost.add('tamper');
      if (o.kinds.includes('counterfactual') && have.counterfactual && !sink.has(have.counterfactual.record)) lost.add('counterfactual');
      if (missing.length === 0 && lost.size === 0) {
        skipped++;
        result.set(q.id, toExtras(have));
        o.onProgress?.({ done, skipped, total: questions.length, id: q.id, elapsedMs: Date.now() - started });
        continue;
      }
      const todo = new Set<ExtraKind>([...missing, ...lost]);
      const line: FactsLine = { id: q.id };
      const origRows = new Map<number, Float32Array[]>();
      const orig = async (layer: number) => {
        if (!origRows.has(layer)) {
          const t = q.record.tensors[pointOf(layer)];
          origRows.set(layer, await tensorRows(o.captureDir, t, q.latentPositions));
        }
        return origRows.get(layer)!;
      };
      if (todo.has('readout')) {
        line.readout = {};
        for (const layer of o.layers) line.readout[String(layer)] = await headReadout(session, model, await orig(layer), vocabLimit, o.signal);
      }
      if (todo.has('tamper')) {
        line.tamper = [];
        for (const t of tamperPlan(q.latentPositions.length, o.seed, q.id, o.tamperNoise)) {
          const iv: Intervention =
            t.kind === 'swap' ? { kind: 'swap', step: t.steps[0], with: t.steps[1] } : { kind: 'noise', step: t.steps[0], scale: t.scale, seed: t.seed };
          const r = await reasoner.reason({ tokens: q.trace.prompt_tokens }, { ...runOpts, interventions: [iv], capture: points, capturePositions: ['latent'], signal: o.signal });
          const record = `${q.id}~${t.kind}`;
          if (!sink.has(record)) await sink.add(reasoningRecordEntry({ id: record }, r, head.settings.eotId), reasoningTensors(r, points));
          line.tamper.push({ ...t, record, answer: r.answer });
        }
      }
      if (todo.has('counterfactual')) {
        const p = q.trace.question ? perturbQuestion(q.trace.question, o.seed, q.id) : null;
        if (!p) line.counterfactual = null;
        else {
          const r = await reasoner.reason(p.question, { ...runOpts, format: reasoning.format, capture: points, capturePositions: ['latent'], signal: o.signal });
          const record = `${q.id}~cf`;
          if (!sink.has(record)) await sink.add(reasoningRecordEntry({ id: record, text: p.question }, r, head.settings.eotId), reasoningTensors(r, points));
          const distance: Record<string, number[]> = {};
          for (const layer of o.layers) {
            const c = r.captures[pointOf(layer)];
            const base = await orig(layer);
            distance[String(layer)] = base.map((v, s) => {
              const cos = native().vectorStats(c.data.subarray(s * c.width, (s + 1) * c.width), v).cosineToPrev ?? 1;
              return Math.fround(1 - cos);
            });
          }
          line.counterfactual = { record, from: p.from, to: p.to, which: p.which, question: p.question, answer: r.answer, distance };
        }
      }
      await appendFile(factsPath, JSON.stringify(line) + '\n');
      const merged = { ...have, ...line };
      facts.set(q.id, merged);
      result.set(q.id, toExtras(merged));
      done++;
      o.onProgress?.({ done, skipped, total: questions.length, id: q.id, elapsedMs: Date.now() - started });
    }
    await sink.finish();
  } catch (e) {
    await sink.salvage();
    throw e;
  } finally {
    session.dispose();
  }
  return result;
}

function toExtras(l: FactsLine): QuestionExtras {
  return { id: l.id, readout: l.readout ?? null, tamper: l.tamper ?? null, counterfactual: l.counterfactual ?? null };
}

/** The extra capture's manifest, for resolving vectors of rerun records. */
export async function extrasManifest(out: string): Promise<CaptureManifest | null> {
  const dir = join(out, EXTRA_DIR);
  if (!existsSync(join(dir, 'manifest.json'))) return null;
  return readCaptureManifest(dir);
}
