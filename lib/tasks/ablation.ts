import { answerKey, sameAnswer, say, yesNo } from './labels.js';
import type { TaskGenerator } from './types.js';
import { allSteps, hasLatents } from './vectors.js';

const VERB = { zero: ['zeroed out', 'zeroing'], skip: ['skipped', 'skipping'], noise: ['replaced by noise', 'noising'] } as const;

/**
 * Ablation impact. The trace reran the question once per latent step k and ablation kind (zero:
 * step k's input set to 0; skip: step k dropped, its input repeated; noise: step k's input
 * perturbed), recomputing the later steps. Over all N step vectors the oracle says whether
 * ablating step k changes the answer (Yes/No) and what it becomes (the ablated answer's key).
 * This teaches which steps carry the computation, not just what it ends in: two questions with
 * the same final answer differ in which of their steps matter.
 */
export const ablation: TaskGenerator = {
  name: 'ablation',
  title: 'does ablating (zero/skip/noise) step k change the answer; to what',
  unavailable(q) {
    if (Object.keys(q.trace.ablations).length === 0) return 'the trace has no ablations (trace with --ablations zero,skip,noise)';
    return hasLatents(q);
  },
  generate(q, _layer, ctx) {
    const out = [];
    for (const [kind, list] of Object.entries(q.trace.ablations) as [keyof typeof VERB, { step: number; answer: string }[]][]) {
      for (const a of list) {
        if (a.step >= q.nSteps) continue;
        const vars = { step: a.step, verb: VERB[kind][0], verbing: VERB[kind][1] };
        const source = { kind, step: a.step, ablated_answer: a.answer };
        out.push({
          key: `${kind}.${a.step}.changed`,
          question: ctx.say('ablation.changed', `${q.id}/${kind}/${a.step}/c`, vars),
          answer: yesNo(!sameAnswer(a.answer, q.trace.answer)),
          vectors: allSteps(q),
          source,
        });
        out.push({
          key: `${kind}.${a.step}.to`,
          question: ctx.say('ablation.to', `${q.id}/${kind}/${a.step}/t`, vars),
          answer: say(answerKey(a.answer)),
          vectors: allSteps(q),
          source,
        });
      }
    }
    return out;
  },
};
