import { say } from './labels.js';
import type { TaskDraft, TaskGenerator } from './types.js';
import { hasLatents, steps } from './vectors.js';

/**
 * Logit-lens token. One latent step vector; the answer is the top token the model's own output
 * head reads from it (final norm + unembedding applied to the vector, over the tokenizer's ids).
 * Cheap and dense, it anchors the oracle's reading of vectors in the model's vocabulary. It leaks
 * the head's view (the label is a fixed function of the vector), so examples carry
 * leaks_head: true and --no-head-view leaves the task out. At the last layer the label is the
 * trace's own logit lens of the step (steps[s+1].top_k[0]).
 */
export const logitLens: TaskGenerator = {
  name: 'logit_lens',
  title: "the top token the model's own head reads from a step vector (leaks the head's view)",
  leaksHead: true,
  extras: ['readout'],
  unavailable(q) {
    if (!q.extras?.readout) return 'no readouts (make-tasks computes them with the model)';
    return hasLatents(q);
  },
  generate(q, layer, ctx) {
    const out: TaskDraft[] = [];
    const readouts = q.extras?.readout?.[layer] ?? [];
    readouts.forEach((r, s) => {
      if (r.token.trim() === '' || r.token.includes('\uFFFD')) return;
      out.push({
        key: `step${s}`,
        question: ctx.say('logit_lens.token', `${q.id}/${s}`),
        answer: say(r.token),
        vectors: steps(q, [s]),
        source: { step: s, token_id: r.id },
        readout: say(r.token),
      });
    });
    return out;
  },
};
