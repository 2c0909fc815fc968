// Ground-truth tasks (evaluation only): what each latent step should hold, from the dataset's
// "program" field (the organism's problems carry one: every operation, its operands and result).
// They never reach train.jsonl; their train-split examples go to probe-train.jsonl, where the
// supervised linear probe of the report is fitted (the ceiling an unsupervised oracle is measured
// against). A problem step's vectors are the latent steps that stand for it when the model records
// its recipe (latentsPerStep), else every latent step.
import type { ProgramStep } from './inputs.js';
import { canonicalNumber, say, yesNo } from './labels.js';
import { OPERATIONS } from './solution.js';
import type { QuestionData, TaskDraft, TaskGenerator, VectorSpec } from './types.js';
import { allSteps, hasLatents, steps } from './vectors.js';

/** The latent steps standing for problem step j (0-based): latentsPerStep of them, or all when unknown. */
export function programStepLatents(q: QuestionData, j: number): number[] {
  if (q.latentsPerStep === null) return Array.from({ length: q.nSteps }, (_, k) => k);
  const out: number[] = [];
  for (let k = j * q.latentsPerStep; k < Math.min(q.nSteps, (j + 1) * q.latentsPerStep); k++) out.push(k);
  return out;
}

function stepVectors(q: QuestionData, j: number): VectorSpec | null {
  const ks = programStepLatents(q, j);
  return ks.length ? steps(q, ks) : null;
}

const num = (x: number) => canonicalNumber(String(x));

function unavailable(q: QuestionData): string | undefined {
  if (q.program === null) return 'no program (give make-tasks --data with the "program" field, as the organism\'s problems have)';
  return hasLatents(q);
}

/** The model's own head on the last latent of step j at this layer, when make-tasks computed readouts. */
function readoutOf(q: QuestionData, layer: number, vectors: VectorSpec): string | undefined {
  const last = q.latentPositions.indexOf(vectors.positions[vectors.positions.length - 1]);
  const r = q.extras?.readout?.[String(layer)]?.[last];
  return r && r.token.trim() !== '' ? say(r.token) : undefined;
}

/** One draft per problem step that has latents, with the step's provenance. */
function perStep(q: QuestionData, make: (s: ProgramStep, j: number, v: VectorSpec) => Omit<TaskDraft, 'vectors'> | null): TaskDraft[] {
  const out: TaskDraft[] = [];
  q.program!.forEach((s, j) => {
    const v = stepVectors(q, j);
    if (!v) return;
    const d = make(s, j, v);
    if (d) out.push({ ...d, vectors: v, source: { program_step: j, op: s.op, operands: s.operands, result: s.result, ...d.source } });
  });
  return out;
}

export const stepResult: TaskGenerator = {
  name: 'step_result',
  title: "the intermediate result of problem step j (ground truth from the program; eval only)",
  evalOnly: true,
  groundTruth: true,
  probe: true,
  extras: ['readout'],
  unavailable,
  generate(q, layer, ctx) {
    return perStep(q, (s, j, v) => ({
      key: `step${j + 1}`,
      question: ctx.say('program.result', `${q.id}/r${j}`, { j: j + 1 }),
      answer: say(num(s.result)),
      readout: readoutOf(q, layer, v),
    }));
  },
};

export const stepOperation: TaskGenerator = {
  name: 'step_operation',
  title: 'the operation of problem step j (ground truth; eval only)',
  evalOnly: true,
  groundTruth: true,
  probe: true,
  unavailable,
  generate(q, _layer, ctx) {
    return perStep(q, (s, j) => ({
      key: `step${j + 1}`,
      question: ctx.say('program.operation', `${q.id}/o${j}`, { j: j + 1 }),
      answer: say(OPERATIONS[s.op]),
    }));
  },
};

export const stepQuantity: TaskGenerator = {
  name: 'step_quantity',
  title: 'which quantity problem step j is about (ground truth; eval only)',
  evalOnly: true,
  groundTruth: true,
  probe: true,
  unavailable(q) {
    const why = unavailable(q);
    if (why) return why;
    return q.program!.some((s) => s.quantity) ? undefined : 'the program names no quantities';
  },
  generate(q, _layer, ctx) {
    return perStep(q, (s, j) =>
      s.quantity
        ? { key: `step${j + 1}`, question: ctx.say('program.quantity', `${q.id}/q${j}`, { j: j + 1 }), answer: say(s.quantity) }
        : null,
    );
  },
};

/**
 * Is x computed anywhere in the chain? One step result (Yes) and one number the problem never
 * holds (No: the smallest integer above that result that is no operand, result or number of the
 * question), so Yes and No are balanced. Over every latent step.
 */
export const valueComputed: TaskGenerator = {
  name: 'value_computed',
  title: 'whether a value is computed anywhere in the chain (ground truth; eval only)',
  evalOnly: true,
  groundTruth: true,
  unavailable,
  generate(q, _layer, ctx) {
    const p = q.program!;
    const held = new Set<string>([...p.flatMap((s) => [...s.operands, s.result]).map(num), ...(q.trace.question?.match(/\d+(?:\.\d+)?/g) ?? []).map(canonicalNumber)]);
    const yes = p[Math.floor(ctx.rand(`${q.id}/computed`) * p.length)].result;
    let no = Math.floor(yes) + 1;
    while (held.has(String(no))) no++;
    const v = allSteps(q);
    return [
      { key: 'yes', question: ctx.say('program.computed', `${q.id}/y`, { x: num(yes) }), answer: yesNo(true), vectors: v, source: { number: num(yes) } },
      { key: 'no', question: ctx.say('program.computed', `${q.id}/n`, { x: String(no) }), answer: yesNo(false), vectors: v, source: { number: String(no) } },
    ];
  },
};

/**
 * The seed's open questions ("What is the model thinking about?", "What does this step
 * compute?") on the latents of each step but the last, whose intermediate result differs from the
 * final answer. Gold: the step's intermediate result; source.final lets the report count how
 * often the oracle answers with the final answer instead (the seed's failure).
 */
export const stepThinking: TaskGenerator = {
  name: 'step_thinking',
  title: "the seed's open questions on a step; gold is the step's intermediate result (eval only)",
  evalOnly: true,
  groundTruth: true,
  unavailable,
  generate(q, _layer, ctx) {
    const p = q.program!;
    const final = p[p.length - 1].result;
    const out: TaskDraft[] = [];
    for (const asked of ['thinking', 'compute'] as const)
      out.push(
        ...perStep(q, (s, j) =>
          j === p.length - 1 || s.result === final
            ? null
            : { key: `step${j + 1}/${asked}`, question: ctx.say(`program.${asked}`, `${q.id}/t${j}`), answer: say(num(s.result)), source: { asked, final: num(final) } },
        ),
      );
    return out;
  },
};
