import { sameAnswer, say } from './labels.js';
import type { TaskGenerator } from './types.js';
import { allSteps, hasLatents } from './vectors.js';

/** The least m such that the answers decoded after m, m+1, ..., N latent steps all equal the final one. */
export function settlesAfter(earlyAnswers: readonly string[], finalAnswer: string): number {
  let m = earlyAnswers.length;
  while (m > 0 && sameAnswer(earlyAnswers[m - 1], finalAnswer)) m--;
  return m;
}

/**
 * Convergence. From the early decodes after 0..N latent steps: the number of steps m after
 * which the answer is final and stays so (0: the model had it before reasoning; N: only the last
 * step gets there). Given all N step vectors the oracle names m. This asks where in the chain the
 * decisive computation happens, which neither the answer nor any single step tells.
 */
export const convergence: TaskGenerator = {
  name: 'convergence',
  title: 'the number of steps after which the early answer is the final one',
  unavailable(q) {
    if (q.trace.early_decodes.length === 0) return 'the trace has no early decodes (trace with --early-decode)';
    for (let m = 0; m < q.nSteps; m++) if (!q.trace.early_decodes.some((d) => d.latents === m)) return `the trace has no early decode after ${m} steps`;
    return hasLatents(q);
  },
  generate(q, _layer, ctx) {
    const early = Array.from({ length: q.nSteps }, (_, m) => q.trace.early_decodes.find((d) => d.latents === m)!.answer);
    const m = settlesAfter(early, q.trace.answer);
    return [
      {
        key: 'settles',
        question: ctx.say('convergence.steps', q.id),
        answer: say(m),
        vectors: allSteps(q),
        source: { settles_after: m },
      },
    ];
  },
};
