// What the organism can do, measured on fresh problems: accuracy with its latent steps and without
// them, accuracy with each latent step zeroed, and linear probes (step j's intermediate result read
// from the residual stream at every layer and latent position). Counting and bookkeeping here;
// every number on activations (the reasoning loop, the probe's fit) comes from the engine.
import { isCorrect } from '../core/answers.js';
import { InputError } from '../core/errors.js';
import { LatentHead } from '../reasoning/latent-head.js';
import { loadModel } from '../engine/model.js';
import { invertState } from '../capture/invert.js';
import { native } from '../core/native.js';
import { reasonStream } from '../reasoning/reason.js';
import { latentsPerStepOf, RECIPE_METADATA_KEY } from './recipe.js';
import { generateProblem, generateProblems, MAX_VALUE, problemKey, type OrganismProblem, type TemplateSet } from './data.js';

export interface OrganismEvalOptions {
  model: string;
  latentHead?: string;
  /** Test problems (fresh seed). */
  n?: number;
  seed?: number;
  /** [min, max] operations per problem; default 3..3 */
  steps?: [number, number];
  /** Phrasings of the test problems; default train (the ones the organism learned). */
  templates?: TemplateSet;
  /**
   * Also score this many problems (a further seed) that use a held-out phrasing in at least one
   * step, with latents only: the generalisation split (0: none). Default n when templates is train.
   */
  heldoutPhrasings?: number;
  /** Problems to fit the probes on (a further seed, train phrasings); 0: no probes. */
  probeTrain?: number;
  /** Ridge penalty per training row. */
  probeLambda?: number;
  /** Test problems whose latent steps are inverted (lib/capture/invert.ts, last layer); 0: none. */
  invert?: number;
  threads?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface Rate {
  correct: number;
  n: number;
  accuracy: number;
}

export interface OrganismEvalReport {
  model: string;
  settings: { n: number; seed: number; steps: [number, number]; templates: TemplateSet; latentSteps: number; droppedAsInTrain: number };
  withLatents: Rate;
  withoutLatents: Rate;
  /** With latents, on problems with a held-out phrasing (seed + 2); null when not asked. */
  heldoutPhrasings: Rate | null;
  /** zeroAblation[k]: accuracy with latent input k zeroed (later steps recomputed). */
  zeroAblation: Rate[];
  probe: null | {
    trainProblems: number;
    testProblems: number;
    /** points[l] = "resid_post.<l>"; positions[p]: p = 0 the bot position (h_0), p = k the k-th latent */
    points: string[];
    /** accuracy[j][l][p]: step j's result predicted from point l at position p */
    accuracy: number[][][];
    /** best[j][l] = max over positions */
    best: number[][];
    /** chance: the most frequent class of the train split, scored on the test split */
    majority: number[];
  };
  /**
   * Latent inversion of every latent step (the top texts after the question whose last-layer
   * state is closest to the step's): how often they name the intermediate result of the problem
   * step the latent stands for, and how often the final answer.
   */
  inversion: null | {
    problems: number;
    point: string;
    /** Latent steps per problem step (the Coconut recipe's latentsPerStep; 1 otherwise). */
    latentsPerStep: number;
    perLatent: {
      /** The problem step latent k stands for (k / latentsPerStep), null past the problem's steps. */
      programStep: number | null;
      /** The best text holds that step's result (a number token). */
      ownResultTop1: Rate;
      /** One of the top 8 texts does. */
      ownResultTop8: Rate;
      /** The best text holds the final answer (the seed's failure: every step "says" the answer). */
      finalAnswerTop1: Rate;
    }[];
  };
  elapsedMs: number;
}

const rate = (correct: number, n: number): Rate => ({ correct, n, accuracy: n ? correct / n : 0 });

/** Train-set problem keys of the recipe a model records (lro.organism.recipe), to keep test problems unseen. */
function trainKeys(meta: Record<string, unknown>): Set<string> {
  const r = meta[RECIPE_METADATA_KEY];
  if (typeof r !== 'string') return new Set();
  const recipe = JSON.parse(r) as { dataSeed: number; trainProblems: number; minSteps: number; maxSteps: number };
  const train = generateProblems({ seed: recipe.dataSeed, n: recipe.trainProblems, minSteps: recipe.minSteps, maxSteps: recipe.maxSteps, templates: 'train' });
  return new Set(train.map(problemKey));
}

export async function evaluateOrganism(o: OrganismEvalOptions): Promise<OrganismEvalReport> {
  const t0 = Date.now();
  const n = o.n ?? 200;
  const seed = o.seed ?? 1001;
  const steps = o.steps ?? [3, 3];
  const templates = o.templates ?? 'train';
  const heldoutN = o.heldoutPhrasings ?? (templates === 'train' ? n : 0);
  const probeTrain = o.probeTrain ?? 2000;
  const invert = o.invert ?? 0;
  const model = await loadModel(o.model);
  try {
    const head = LatentHead.find(model, o.latentHead);
    if (!head) throw new InputError(`${o.model}: no latent head (give --latent-head)`);
    const N = head.settings.steps;
    const L = model.info.nLayer;
    const seen = trainKeys(model.metadata());
    const pick = (s: number, count: number, t: TemplateSet) => {
      const out: OrganismProblem[] = [];
      let dropped = 0;
      for (let i = 0; out.length < count; i++) {
        if (i > count * 20) throw new InputError(`organism eval: too few unseen problems for seed ${s}`);
        const p = generateProblem(s, i, { minSteps: steps[0], maxSteps: steps[1], templates: t });
        if (seen.has(problemKey(p))) dropped++;
        else out.push(p);
      }
      return { out, dropped };
    };
    const test = pick(seed, n, templates);
    const fit = probeTrain > 0 ? pick(seed + 1, probeTrain, 'train') : { out: [], dropped: 0 };
    const points = Array.from({ length: L }, (_, l) => `resid_post.${l}`);

    // Features of one problem: [point][position] rows of the main sequence's bot and latent positions.
    type Feats = Float32Array[][];
    const features = (captures: Record<string, { positions: number[]; width: number; data: Float32Array }>): Feats =>
      points.map((p) => {
        const c = captures[p];
        return c.positions.map((_, i) => c.data.subarray(i * c.width, (i + 1) * c.width));
      });

    const meta = model.metadata();
    const latentsPerStep = latentsPerStepOf(meta);
    const lastPoint = points[L - 1];
    const numbersIn = (tokens: number[]) => new Set(tokens.map((t) => model.detokenize([t]).trim()).filter((x) => /^\d+$/.test(x)).map(Number));
    const inv = Array.from({ length: N }, () => ({ own1: 0, own8: 0, final1: 0, owned: 0 }));
    let inverted = 0;
    let correct = 0;
    let noLatent = 0;
    const ablated = Array<number>(N).fill(0);
    const testFeats: Feats[] = [];
    const records = (ps: OrganismProblem[]) => ps.map((p) => ({ id: p.id, text: p.question, answer: p.answer }));
    let done = 0;
    for await (const item of reasonStream(model, records(test.out), {
      latentHead: head,
      ablations: ['zero'],
      noReasoning: true,
      maxAnswerTokens: 12,
      capture: probeTrain > 0 || invert > 0 ? points : [],
      capturePositions: ['bot', 'latent'],
      threads: o.threads ?? 0,
    })) {
      const gold = item.gold!;
      if (inverted < invert) {
        const problem = test.out.find((p) => p.id === item.record.id)!;
        const r = item.result;
        const prompt = r.promptTokens.filter((_, i) => r.positionKinds[i] === 'prompt');
        const c = r.captures[lastPoint];
        for (let k = 0; k < N; k++) {
          // Position 0 of the capture is the bot position; latent k is position k + 1.
          const state = c.data.slice((k + 1) * c.width, (k + 2) * c.width);
          const texts = await invertState(model, prompt, lastPoint, state, { maxTokens: 6, beam: 8, top: 8, threads: o.threads ?? 0 });
          const j = Math.floor(k / latentsPerStep);
          const own = problem.program[j]?.result;
          const sets = texts.map((t) => numbersIn(t.tokens));
          if (sets[0]?.has(problem.program[problem.program.length - 1].result)) inv[k].final1++;
          if (own !== undefined) {
            inv[k].owned++;
            if (sets[0]?.has(own)) inv[k].own1++;
            if (sets.some((x) => x.has(own))) inv[k].own8++;
          }
        }
        inverted++;
        o.onProgress?.('invert', inverted, Math.min(invert, test.out.length));
      }
      if (isCorrect(item.result.answer, gold)) correct++;
      if (item.result.noReasoning && isCorrect(item.result.noReasoning.answer, gold)) noLatent++;
      for (const a of item.result.ablations.zero ?? []) if (isCorrect(a.answer, gold)) ablated[a.step]++;
      if (probeTrain > 0) testFeats.push(features(item.result.captures));
      o.onProgress?.('test', ++done, test.out.length);
    }

    let probe: OrganismEvalReport['probe'] = null;
    if (probeTrain > 0) {
      const fitFeats: Feats[] = [];
      done = 0;
      for await (const item of reasonStream(model, records(fit.out), {
        latentHead: head,
        maxAnswerTokens: 0,
        capture: points,
        capturePositions: ['bot', 'latent'],
        threads: o.threads ?? 0,
      })) {
        fitFeats.push(features(item.result.captures));
        o.onProgress?.('probe', ++done, fit.out.length);
      }
      const d = model.info.nEmbd;
      const J = steps[1];
      const P = N + 1;
      const stack = (fs: Feats[], l: number, p: number) => {
        const x = new Float32Array(fs.length * d);
        fs.forEach((f, i) => x.set(f[l][p], i * d));
        return x;
      };
      const accuracy: number[][][] = [];
      const majority: number[] = [];
      for (let j = 0; j < J; j++) {
        const ytr = Int32Array.from(fit.out, (p) => p.program[j]?.result ?? 0);
        const yte = test.out.map((p) => p.program[j]?.result ?? 0);
        const counts = new Map<number, number>();
        for (const y of ytr) counts.set(y, (counts.get(y) ?? 0) + 1);
        const mode = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
        majority.push(yte.filter((y) => y === mode).length / yte.length);
        accuracy.push(
          points.map((_, l) =>
            Array.from({ length: P }, (_, p) => {
              const pred = native().ridgeClassify(stack(fitFeats, l, p), ytr, stack(testFeats, l, p), d, MAX_VALUE + 1, o.probeLambda ?? 1e-2);
              let hit = 0;
              pred.forEach((c, i) => (hit += c === yte[i] ? 1 : 0));
              return hit / yte.length;
            }),
          ),
        );
      }
      probe = {
        trainProblems: fit.out.length,
        testProblems: test.out.length,
        points,
        accuracy,
        best: accuracy.map((rows) => rows.map((r) => Math.max(...r))),
        majority,
      };
    }
    let heldout: Rate | null = null;
    if (heldoutN > 0) {
      const problems = pick(seed + 2, heldoutN, 'heldout').out;
      let hits = 0;
      done = 0;
      for await (const item of reasonStream(model, records(problems), { latentHead: head, maxAnswerTokens: 12, threads: o.threads ?? 0 })) {
        if (isCorrect(item.result.answer, item.gold!)) hits++;
        o.onProgress?.('held-out phrasings', ++done, problems.length);
      }
      heldout = rate(hits, problems.length);
    }
    return {
      model: o.model,
      settings: { n: test.out.length, seed, steps, templates, latentSteps: N, droppedAsInTrain: test.dropped },
      withLatents: rate(correct, test.out.length),
      withoutLatents: rate(noLatent, test.out.length),
      heldoutPhrasings: heldout,
      zeroAblation: ablated.map((c) => rate(c, test.out.length)),
      probe,
      inversion:
        inverted > 0
          ? {
              problems: inverted,
              point: lastPoint,
              latentsPerStep,
              perLatent: inv.map((x, k) => ({
                programStep: x.owned > 0 ? Math.floor(k / latentsPerStep) : null,
                ownResultTop1: rate(x.own1, x.owned),
                ownResultTop8: rate(x.own8, x.owned),
                finalAnswerTop1: rate(x.final1, inverted),
              })),
            }
          : null,
      elapsedMs: Date.now() - t0,
    };
  } finally {
    model.dispose();
  }
}
