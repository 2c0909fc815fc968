import { answerKey, say } from './labels.js';
import { count } from './wording.js';
import type { TaskDraft, TaskGenerator } from './types.js';
import { firstSteps, hasLatents } from './vectors.js';

/**
 * Early decoding. The trace decoded the answer after m = 1..N-1 latent steps (eot fed right
 * after step m-1); given the vectors of steps 0..m-1 the oracle says that early answer (its key).
 * Unlike the final answer this changes along the chain, so the oracle has to read the state a
 * partial computation is in rather than the end result. The logit-lens baseline is the output
 * head's top token on the last given vector.
 */
export const earlyDecode: TaskGenerator = {
  name: 'early_decode',
  title: 'what the model would answer after k steps (vectors of steps <= k)',
  extras: ['readout'],
  unavailable(q) {
    if (q.trace.early_decodes.length === 0) return 'the trace has no early decodes (trace with --early-decode)';
    if (q.nSteps < 2) return 'fewer than 2 latent steps';
    return hasLatents(q);
  },
  generate(q, layer, ctx) {
    const out: TaskDraft[] = [];
    for (let m = 1; m < q.nSteps; m++) {
      const e = q.trace.early_decodes.find((d) => d.latents === m);
      if (!e) continue;
      const r = q.extras?.readout?.[layer]?.[m - 1];
      out.push({
        key: `after${m}`,
        question: ctx.say('early.answer', `${q.id}/${m}`, { steps: count(m, 'latent step') }),
        answer: say(answerKey(e.answer)),
        vectors: firstSteps(q, m),
        source: { latents: m, early_answer: e.answer },
        ...(r ? { readout: say(r.token) } : {}),
      });
    }
    return out;
  },
};
