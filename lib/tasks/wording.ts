// Question wordings. Each template has a few phrasings so that the oracle learns the content of
// a question rather than one fixed string; the phrasing is chosen by a hash of the example, so a
// rerun with the same seed writes the same files. Placeholders: {name}.
import { InputError } from '../core/errors.js';

export const TEMPLATES: Record<string, readonly string[]> = {
  'ablation.changed': [
    'If latent step {step} were {verb}, would the final answer change?',
    'Does {verbing} latent step {step} change what the model answers?',
    'Would the answer be different with step {step} {verb}?',
  ],
  'ablation.to': [
    'If latent step {step} were {verb}, what would the model answer?',
    'What does the model answer when step {step} is {verb}?',
    'With latent step {step} {verb}, the answer becomes what?',
  ],
  'early.answer': [
    'What would the model answer if it stopped reasoning after these {steps}?',
    'If the model answered now, after {steps}, what would it say?',
    'After {steps} of reasoning, what is the current answer?',
  ],
  'convergence.steps': [
    'After how many latent steps does the answer settle on its final value?',
    'How many reasoning steps does the model need before its answer stops changing?',
    'From which number of latent steps on is the early answer the final one?',
  ],
  'prompt.first': [
    'What is the first sentence of the question being solved?',
    'Which problem is the model working on? Give its first sentence.',
    'Reconstruct the start of the question from these thoughts.',
  ],
  'contrastive.changed': [
    'Does the latent reasoning change the answer compared with answering without it?',
    'Would the model answer differently without these latent steps?',
    'Is the answer with reasoning different from the answer without reasoning?',
  ],
  'contrastive.fromto': [
    'What does the model answer without latent reasoning, and what with it?',
    'How does the answer go from no reasoning to reasoning?',
    'Give the answer without the latent steps and the answer with them.',
  ],
  'lens.past': [
    'Give the {tokens} just before this position.',
    'Name the {tokens} preceding this point in the text.',
    'Recover the previous {tokens}.',
  ],
  'lens.future': [
    'Give the {tokens} that come next.',
    'Name the {tokens} following this position.',
    'Predict the next {tokens} of the text.',
  ],
  'logit_lens.token': [
    "Which token does the model's output head read from this vector?",
    'What is the top token of the logit lens here?',
    'Decode this vector with the output head: which token comes first?',
  ],
  'step.which': [
    'Which latent step (0 to {last}) is this vector from?',
    'At which reasoning step, counting from 0 up to {last}, was this vector made?',
    'Give the index (0-{last}) of the latent step of this vector.',
  ],
  'tamper.any': [
    'Was one of these latent steps swapped or corrupted with noise?',
    'Are these reasoning steps intact, or was one of them tampered with?',
    'Has any of these steps been swapped or noised?',
  ],
  'tamper.noised': [
    'One of these steps was corrupted with noise. Which one?',
    'Which latent step received noise?',
    'Find the noised step among these thoughts.',
  ],
  'tamper.swapped': [
    'Two of these steps were swapped. Which two?',
    'Which pair of latent steps traded places?',
    'Name the two swapped steps.',
  ],
  'cf.answer': [
    'If the {from} in the question were {to} instead, would the answer change?',
    'Changing {from} to {to} in the problem: does the final answer change?',
    'Would the model answer differently if the question said {to} instead of {from}?',
  ],
  'cf.moved': [
    'If the {from} in the question were {to}, would latent step {step} change by more than {threshold} (cosine distance)?',
    'Changing {from} to {to}: does step {step} move more than {threshold} in cosine distance?',
    'Would step {step} differ by over {threshold} (1 - cosine) if the question had {to} instead of {from}?',
  ],
  'answer.final': [
    'What is the final answer to the problem?',
    'Which number does the model output at the end?',
    'What will the model answer?',
  ],
  'solution.result': [
    'What is the result of calculation {j} of the solution?',
    'In the worked solution, what does calculation {j} compute?',
    'Give the result of the solution\'s calculation number {j}.',
  ],
  'solution.operation': [
    'Which operation does calculation {j} of the solution use?',
    'Is calculation {j} an addition, subtraction, multiplication or division?',
    'What kind of arithmetic is calculation {j}?',
  ],
  'program.result': [
    'What is the result of step {j}?',
    'Which value does step {j} of the reasoning produce?',
    'What number comes out of step {j}?',
  ],
  'program.operation': [
    'Which operation does step {j} use?',
    'Is step {j} an addition, subtraction, multiplication or division?',
    'What kind of arithmetic does step {j} do?',
  ],
  'program.quantity': [
    'Which quantity is step {j} about?',
    'What is being counted in step {j}?',
    'Step {j} computes an amount of what?',
  ],
  'program.computed': [
    'Is the value {x} computed anywhere in the reasoning?',
    'Does the chain of steps produce {x} at some point?',
    'Is {x} one of the values the reasoning computes?',
  ],
  // The seed's two open questions, word for word (one wording each: the study compares them).
  'program.thinking': ['What is the model thinking about?'],
  'program.compute': ['What does this step compute?'],
  'solution.contains': [
    'Does the number {x} appear in the worked solution?',
    'Is {x} one of the numbers of the solution?',
    'Does the solution use the number {x}?',
  ],
};

/** "1 step", "3 steps": counts in questions read as English. */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Fills {name} placeholders; a missing value is a programming error, caught by the task tests. */
export function fill(template: string, vars: Record<string, string | number> = {}): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    if (!(k in vars)) throw new Error(`wording: no value for {${k}} in "${template}"`);
    return String(vars[k]);
  });
}

export function templates(id: string): readonly string[] {
  const t = TEMPLATES[id];
  if (!t) throw new InputError(`wording: no template "${id}"`);
  return t;
}
