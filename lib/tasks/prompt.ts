import { firstSentence, say } from './labels.js';
import type { TaskGenerator } from './types.js';
import { allSteps, hasLatents } from './vectors.js';

/**
 * Prompt reconstruction. From the N latent step vectors alone the oracle writes the question's
 * first sentence. The latents are computed from the question, so whatever of it they keep
 * (entities, quantities, the setting) is readable here; the seed found this hard, and it stays
 * in the suite as the measure of how much of the input the latents carry.
 */
export const promptTask: TaskGenerator = {
  name: 'prompt',
  title: "the question's first sentence from the latents alone",
  unavailable(q) {
    if (!q.trace.question) return 'the trace line has no question text';
    return hasLatents(q);
  },
  generate(q, _layer, ctx) {
    const sentence = firstSentence(q.trace.question!);
    return [{ key: 'first', question: ctx.say('prompt.first', q.id), answer: say(sentence), vectors: allSteps(q) }];
  },
};
