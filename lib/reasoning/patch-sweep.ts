// Activation patching over the latent chain (TransformerLens-style causal map): for a clean and a
// corrupted question (say, one number changed), the clean run's state at latent step k and hook
// point P is written into the corrupted run, and the probability of the clean answer's first
// token the corrupted run does not write is read at the row predicting it. A cell near the clean probability says the clean
// information at (k, P) is enough to restore the answer; near the corrupted one, that it is not.
// P: 'input' (the fed embedding e_k) and resid_post.L for each layer asked for.
import { z } from 'zod';
import { InputError } from '../core/errors.js';
import type { Model } from '../engine/model.js';
import { native } from '../core/native.js';
import { parseOptions } from '../core/options.js';
import { reason, reasoningContext } from './reason.js';
import type { Intervention, ReasonResult } from './reasoner.js';

export const PatchSweepOptionsSchema = z
  .object({
    /** Layers of resid_post to patch (default all); the fed embedding ('input') is always swept. */
    layers: z.array(z.number().int().min(0)).min(1).optional(),
    latentSteps: z.number().int().min(1).max(4096).optional(),
    maxAnswerTokens: z.number().int().min(1).max(256).default(8),
    latentHead: z.string().min(1).optional(),
    threads: z.number().int().min(0).max(1024).default(0),
  })
  .strict();
export type PatchSweepOptions = z.input<typeof PatchSweepOptionsSchema>;

export interface PatchRun {
  answer: string;
  answerTokens: number[];
  /** P(the target token) at the row predicting it, after the run's own answer tokens (0 when they differ from the clean ones before it) */
  pClean: number;
}

export interface PatchSweepResult {
  clean: PatchRun;
  corrupted: PatchRun;
  /** The token whose probability is read: the clean answer's first one the corrupted run does not write */
  target: number;
  /** Its index in the clean answer; a run whose own answer differs before it scores 0 */
  targetIndex: number;
  latentSteps: number;
  /** 'input' then resid_post.L for each layer */
  points: string[];
  /** cells[k][p]: the corrupted run with step k's state at points[p] taken from the clean run */
  cells: PatchRun[][];
  /** (pClean(cell) - pClean(corrupted)) / (pClean(clean) - pClean(corrupted)); null when clean and corrupted agree */
  recovered: (number | null)[][];
}

/** P(token) at the row that predicts answer token j (the run's own answer tokens before it). */
function answerProb(r: ReasonResult, j: number, token: number, nVocab: number): number {
  let first = r.positionKinds.indexOf('answer');
  if (first < 0) first = r.positionKinds.length;
  const row = first + j - 1;
  const logits = r.captures.logits;
  const at = logits.positions.indexOf(row);
  if (at < 0) throw new Error(`patch-sweep: no logits captured at position ${row}`);
  // The engine's softmax: every token's probability, sorted; ours is looked up.
  const s = native().logitStats(logits.data, at, nVocab, nVocab, nVocab);
  return s.topProbs[s.topIds.indexOf(token)];
}

export async function patchSweep(model: Model, clean: string, corrupted: string, options: PatchSweepOptions = {}): Promise<PatchSweepResult> {
  const o = parseOptions(PatchSweepOptionsSchema, options, 'patch-sweep options');
  const nLayer = model.info.nLayer;
  const layers = o.layers ?? Array.from({ length: nLayer }, (_, l) => l);
  for (const l of layers) if (l >= nLayer) throw new InputError(`patch-sweep: layer ${l} is out of range (the model has layers 0..${nLayer - 1})`);
  const points = ['input', ...layers.map((l) => `resid_post.${l}`)];
  const base = { latentSteps: o.latentSteps, maxAnswerTokens: o.maxAnswerTokens, latentHead: o.latentHead, threads: o.threads };
  const V = model.info.nVocab;
  const session = model.createSession({ nCtx: reasoningContext(model), threads: o.threads });
  try {
    const run = (q: string, interventions: Intervention[] = [], capture: string[] = ['logits']) =>
      reason(model, q, { ...base, session, interventions, capture });
    const c = await run(clean, [], ['logits', ...layers.map((l) => `resid_post.${l}`)]);
    if (c.answerTokens.length === 0) throw new InputError('patch-sweep: the clean run gives an empty answer; nothing to restore');
    const N = c.latentSteps;
    const latentRows = c.positionKinds.flatMap((k, p) => (k === 'latent' ? [p] : []));
    const cleanVector = (k: number, point: string): Float32Array => {
      if (point === 'input') return c.steps[k].e;
      const t = c.captures[point];
      const at = t.positions.indexOf(latentRows[k]);
      return t.data.slice(at * t.width, (at + 1) * t.width);
    };
    const corruptedResult = await run(corrupted);
    if (corruptedResult.latentSteps !== N) throw new InputError('patch-sweep: the two questions run different numbers of latent steps');
    // The token read: the clean answer's first one the corrupted run does not write (an answer
    // prompt both write, " The answer is:", says nothing about the value).
    let j = 0;
    while (j < c.answerTokens.length - 1 && c.answerTokens[j] === corruptedResult.answerTokens[j]) j++;
    const target = c.answerTokens[j];
    const summary = (r: ReasonResult): PatchRun => ({
      answer: r.answer,
      answerTokens: r.answerTokens,
      pClean: r.answerTokens.slice(0, j).every((t, i) => t === c.answerTokens[i]) ? answerProb(r, j, target, V) : 0,
    });
    const cleanRun = summary(c);
    const corruptedRun = summary(corruptedResult);
    const cells: PatchRun[][] = [];
    for (let k = 0; k < N; k++) {
      const row: PatchRun[] = [];
      for (const point of points) {
        const iv: Intervention = { kind: 'patch', step: k, vector: cleanVector(k, point), ...(point === 'input' ? {} : { at: point }) };
        row.push(summary(await run(corrupted, [iv])));
      }
      cells.push(row);
    }
    const span = cleanRun.pClean - corruptedRun.pClean;
    const recovered = cells.map((row) => row.map((cell) => (Math.abs(span) < 1e-9 ? null : (cell.pClean - corruptedRun.pClean) / span)));
    return { clean: cleanRun, corrupted: corruptedRun, target, targetIndex: j, latentSteps: N, points, cells, recovered };
  } finally {
    session.dispose();
  }
}
