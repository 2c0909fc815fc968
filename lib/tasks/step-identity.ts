import { NO, say, YES } from './labels.js';
import type { TaskDraft, TaskGenerator } from './types.js';
import { allSteps, hasLatents, steps } from './vectors.js';

/**
 * Step identity. One latent step vector; the oracle names its step (0..N-1). Steps differ in
 * role (reading the problem, intermediate results, the answer), so telling them apart from the
 * vector alone is a check that the oracle sees the structure of the chain, not only its content.
 */
export const stepIdentity: TaskGenerator = {
  name: 'step_identity',
  title: 'which latent step (0..N-1) a vector comes from',
  unavailable(q) {
    if (q.nSteps < 2) return 'fewer than 2 latent steps';
    return hasLatents(q);
  },
  generate(q, _layer, ctx) {
    return Array.from({ length: q.nSteps }, (_, s) => ({
      key: `step${s}`,
      question: ctx.say('step.which', `${q.id}/${s}`, { last: q.nSteps - 1 }),
      answer: say(s),
      vectors: steps(q, [s]),
      source: { step: s },
    }));
  },
};

/**
 * Tamper detection. make-tasks reruns each question with two steps' inputs swapped, and again
 * with one step's input noised (extras.ts); the rerun's N step vectors (or the clean run's) are
 * shown. The oracle says whether a step was tampered with (Yes/No, half the examples clean),
 * which step was noised, and which two were swapped ("i and j"). A coherent chain has an order
 * and a consistency that a swap or noise breaks; detecting it is reading the chain as a whole.
 */
export const stepTamper: TaskGenerator = {
  name: 'step_tamper',
  title: 'detection of a swapped or noised step, and which',
  extras: ['tamper'],
  unavailable(q) {
    if (!q.extras?.tamper || q.extras.tamper.length === 0) return 'no tampered reruns (make-tasks runs them with the model; needs 2+ latent steps)';
    return hasLatents(q);
  },
  generate(q, _layer, ctx) {
    const out: TaskDraft[] = [];
    for (const run of q.extras!.tamper!) {
      const vectors = { record: run.record, positions: q.latentPositions };
      const source = {
        variant: run.kind,
        tampered_steps: run.steps,
        ...(run.kind === 'noise' ? { noise_scale: run.scale, noise_seed: run.seed } : {}),
        variant_record: run.record,
        variant_answer: run.answer,
      };
      out.push({ key: `${run.kind}.any`, question: ctx.say('tamper.any', `${q.id}/${run.kind}/any`), answer: YES, vectors, source });
      if (run.kind === 'noise')
        out.push({ key: 'noise.which', question: ctx.say('tamper.noised', `${q.id}/noise`), answer: say(run.steps[0]), vectors, source });
      else
        out.push({ key: 'swap.which', question: ctx.say('tamper.swapped', `${q.id}/swap`), answer: say(`${run.steps[0]} and ${run.steps[1]}`), vectors, source });
      // As many clean chains as tampered ones, so "always Yes" scores only half.
      out.push({ key: `clean.${run.kind}`, question: ctx.say('tamper.any', `${q.id}/clean/${run.kind}`), answer: NO, vectors: allSteps(q), source: { variant: 'clean' } });
    }
    return out;
  },
};
