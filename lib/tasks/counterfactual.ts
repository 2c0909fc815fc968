import { sameAnswer, yesNo } from './labels.js';
import type { TaskDraft, TaskGenerator } from './types.js';
import { allSteps, hasLatents } from './vectors.js';

/**
 * Counterfactual. make-tasks changes one number of the question (extras.ts), reruns it and
 * measures, per layer and step, how far the step's vector moved (1 - cosine to the original).
 * Over the original N step vectors the oracle says whether the change would alter the answer
 * and whether step k would move by more than a threshold (the median distance of the training
 * split, shown in the question). It asks which steps depend on which input quantity: the
 * causal reading of a chain that a description of its content cannot give.
 */
export const counterfactual: TaskGenerator = {
  name: 'counterfactual',
  title: 'change one number of the question: does step k move more than a threshold; does the answer change',
  extras: ['counterfactual'],
  unavailable(q) {
    if (!q.extras?.counterfactual) return 'no counterfactual rerun (the question has no number, or make-tasks ran without the model)';
    return hasLatents(q);
  },
  generate(q, layer, ctx) {
    const cf = q.extras!.counterfactual!;
    const vars = { from: cf.from, to: cf.to };
    const source = {
      variant_record: cf.record,
      from: cf.from,
      to: cf.to,
      which_number: cf.which,
      counterfactual_question: cf.question,
      counterfactual_answer: cf.answer,
    };
    const out: TaskDraft[] = [
      {
        key: 'answer',
        question: ctx.say('cf.answer', `${q.id}/a`, vars),
        answer: yesNo(!sameAnswer(cf.answer, q.trace.answer)),
        vectors: allSteps(q),
        source,
      },
    ];
    const threshold = ctx.cfThreshold[String(layer)];
    const dist = cf.distance[String(layer)];
    if (threshold === undefined || !dist) return out;
    dist.forEach((d, s) => {
      out.push({
        key: `moved${s}`,
        question: ctx.say('cf.moved', `${q.id}/m${s}`, { ...vars, step: s, threshold }),
        answer: yesNo(d > threshold),
        vectors: allSteps(q),
        source: { ...source, step: s, distance: d, threshold },
      });
    });
    return out;
  },
};
