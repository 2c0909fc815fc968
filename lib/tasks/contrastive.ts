import { answerKey, sameAnswer, say, yesNo } from './labels.js';
import type { TaskGenerator } from './types.js';
import { allSteps, hasLatents } from './vectors.js';

/**
 * Contrastive. The trace also answered each question with no latent steps (the prompt without
 * bot, then eot). Over the N step vectors the oracle says whether reasoning changed the answer
 * (Yes/No) and gives both answers as "A -> B" (without -> with). It separates what the latents
 * add from what the prompt alone already decides.
 */
export const contrastive: TaskGenerator = {
  name: 'contrastive',
  title: 'does reasoning change the answer vs no latents; from what to what',
  unavailable(q) {
    if (q.trace.no_reasoning_answer === null || q.trace.no_reasoning_answer === undefined)
      return 'the trace has no answers without latents (trace with --no-reasoning)';
    return hasLatents(q);
  },
  generate(q, _layer, ctx) {
    const without = q.trace.no_reasoning_answer!;
    const source = { no_reasoning_answer: without };
    return [
      {
        key: 'changed',
        question: ctx.say('contrastive.changed', `${q.id}/c`),
        answer: yesNo(!sameAnswer(without, q.trace.answer)),
        vectors: allSteps(q),
        source,
      },
      {
        key: 'fromto',
        question: ctx.say('contrastive.fromto', `${q.id}/f`),
        answer: say(`${answerKey(without)} -> ${answerKey(q.trace.answer)}`),
        vectors: allSteps(q),
        source,
      },
    ];
  },
};
