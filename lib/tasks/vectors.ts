// Vector selections shared by the generators.
import type { QuestionData, VectorSpec } from './types.js';

/** The given latent steps of the question's own run. */
export function steps(q: QuestionData, list: readonly number[]): VectorSpec {
  return { record: 'main', positions: list.map((s) => q.latentPositions[s]) };
}

/** Steps 0..count-1. */
export function firstSteps(q: QuestionData, count: number): VectorSpec {
  return steps(
    q,
    Array.from({ length: count }, (_, i) => i),
  );
}

/** Every latent step of the question's own run. */
export function allSteps(q: QuestionData): VectorSpec {
  return firstSteps(q, q.nSteps);
}

/** Whether the capture holds every latent step of the question. */
export function hasLatents(q: QuestionData): string | undefined {
  if (q.nSteps === 0) return 'the run has no latent steps';
  return q.latentPositions.every((p) => q.captured.has(p)) ? undefined : 'the capture lacks the latent positions (capture with --positions including latent)';
}
