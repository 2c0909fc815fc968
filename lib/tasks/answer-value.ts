import { answerKey, say } from './labels.js';
import type { TaskDraft, TaskGenerator } from './types.js';
import { hasLatents, steps } from './vectors.js';

/**
 * Answer value: the model's final answer (its key) from one latent step's vector. This is the
 * seed's task and its only success; it stays, labelled as such, as the reference the other
 * tasks are measured against. On its own it teaches the oracle to find the answer and nothing
 * about how the chain reached it. The logit-lens baseline is the head's top token on the vector.
 */
export const answerValue: TaskGenerator = {
  name: 'answer_value',
  title: "the final answer from one step's vector (the seed's task)",
  extras: ['readout'],
  unavailable: hasLatents,
  generate(q, layer, ctx) {
    const label = say(answerKey(q.trace.answer));
    const out: TaskDraft[] = [];
    for (let s = 0; s < q.nSteps; s++) {
      const r = q.extras?.readout?.[layer]?.[s];
      out.push({
        key: `step${s}`,
        question: ctx.say('answer.final', `${q.id}/${s}`),
        answer: label,
        vectors: steps(q, [s]),
        source: { step: s, seed_task: true },
        ...(r ? { readout: say(r.token) } : {}),
      });
    }
    return out;
  },
};
