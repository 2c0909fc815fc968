// The task suite: every generator by name, in the order summaries list them.
import { InputError } from '../core/errors.js';
import { ablation } from './ablation.js';
import { answerValue } from './answer-value.js';
import { contrastive } from './contrastive.js';
import { convergence } from './convergence.js';
import { counterfactual } from './counterfactual.js';
import { earlyDecode } from './early-decode.js';
import { futureLens, pastLens } from './lens.js';
import { logitLens } from './logit-lens.js';
import { stepOperation, stepQuantity, stepResult, stepThinking, valueComputed } from './program.js';
import { promptTask } from './prompt.js';
import { equationOperation, equationResult, numberInSolution } from './solution.js';
import { stepIdentity, stepTamper } from './step-identity.js';
import type { TaskGenerator } from './types.js';

export const TASKS: readonly TaskGenerator[] = [
  ablation,
  earlyDecode,
  convergence,
  promptTask,
  contrastive,
  pastLens,
  futureLens,
  logitLens,
  stepIdentity,
  stepTamper,
  counterfactual,
  answerValue,
  equationResult,
  equationOperation,
  numberInSolution,
  stepResult,
  stepOperation,
  stepQuantity,
  valueComputed,
  stepThinking,
];

export const TASK_NAMES: readonly string[] = TASKS.map((t) => t.name);

export function taskByName(name: string): TaskGenerator {
  const t = TASKS.find((x) => x.name === name);
  if (!t) throw new InputError(`unknown task "${name}" (known: ${TASK_NAMES.join(', ')})`);
  return t;
}

/** "all" or a comma list; eval-only tasks are in "all" (they go to val/test only). */
export function parseTaskList(spec: string | readonly string[]): TaskGenerator[] {
  const names = (typeof spec === 'string' ? spec.split(',') : spec).map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new InputError('the task list is empty');
  if (names.includes('all')) return [...TASKS];
  const seen = new Set<string>();
  return names.filter((n) => !seen.has(n) && seen.add(n)).map(taskByName);
}
