// What the organism can do, measured on fresh problems: accuracy with its latent steps and without
// them, accuracy with each latent step zeroed, and linear probes (step j's intermediate result read
// from the residual stream at every layer and latent position). Counting and bookkeeping here;
// every number on activations (the reasoning loop, the probe's fit) comes from the engine.
import { isCorrect } from '../answers.js';
import { InputError } from '../errors.js';
import { LatentHead } from '../latent-head.js';
import { loadModel } from '../model.js';
import { native } from '../native.js';
import { reasonStream } from '../reason.js';
import { generateProblem, generateProblems, MAX_VALUE, problemKey, type OrganismProblem, type TemplateSet } from './data.js';

export interface OrganismEvalOptions {
  model: string;
  latentHead?: string;
  /** Test problems (fresh seed). */
  n?: number;
  seed?: number;
  /** [min, max] operations per problem; default 3..3 */
  steps?: [number, number];
  templates?: TemplateSet;
  /** Problems to fit the probes on (a further seed, train phrasings); 0: no probes. */
  probeTrain?: number;
  /** Ridge penalty per training row. */
  probeLambda?: number;
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
  elapsedMs: number;
}

const rate = (correct: number, n: number): Rate => ({ correct, n, accuracy: n ? correct / n : 0 });

/** Train-set problem keys of the recipe a model records (lro.organism.recipe), to keep test problems unseen. */
function trainKeys(meta: Record<string, unknown>): Set<string> {
  const r = meta['lro.organism.recipe'];
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
  const templates = o.templates ?? 'all';
  const probeTrain = o.probeTrain ?? 400;
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
      capture: probeTrain > 0 ? points : [],
      capturePositions: ['bot', 'latent'],
      threads: o.threads ?? 0,
    })) {
      const gold = item.gold!;
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
    return {
      model: o.model,
      settings: { n: test.out.length, seed, steps, templates, latentSteps: N, droppedAsInTrain: test.dropped },
      withLatents: rate(correct, test.out.length),
      withoutLatents: rate(noLatent, test.out.length),
      zeroAblation: ablated.map((c) => rate(c, test.out.length)),
      probe,
      elapsedMs: Date.now() - t0,
    };
  } finally {
    model.dispose();
  }
}
