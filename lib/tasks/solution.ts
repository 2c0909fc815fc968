import { canonicalNumber, numbersIn, say, yesNo } from './labels.js';
import type { QuestionData, TaskDraft, TaskGenerator } from './types.js';
import { allSteps, hasLatents } from './vectors.js';

export interface Equation {
  expression: string;
  result: string;
}

/** GSM8K's calculator annotations "<<48/2=24>>", in order. */
export function equations(solution: string): Equation[] {
  return [...solution.matchAll(/<<([^<>=]+)=([^<>]+)>>/g)].map((m) => ({ expression: m[1].trim(), result: canonicalNumber(m[2]) }));
}

export const OPERATIONS: Record<string, string> = { '+': 'addition', '-': 'subtraction', '*': 'multiplication', '/': 'division' };

/** The one operation of an expression, or null when it mixes several (a leading minus is a sign). */
export function operationOf(expression: string): string | null {
  const ops = new Set([...expression.replace(/^\s*-/, '').replace(/([*/+(-])\s*-/g, '$1').matchAll(/[-+*/]/g)].map((m) => m[0]));
  return ops.size === 1 ? OPERATIONS[[...ops][0]] : null;
}

function unavailable(q: QuestionData): string | undefined {
  if (q.solution === null) return 'no worked solution (give make-tasks --data with the "answer" field)';
  if (equations(q.solution).length === 0) return 'the solution has no <<a*b=c>> annotations';
  return hasLatents(q);
}

/**
 * Equation result (evaluation only): the result of the solution's calculation j (1-based), over
 * the N step vectors. The latents may hold intermediate results; this measures whether the
 * oracle can name them. The labels come from the dataset's worked solution, not from anything
 * the model did, so the task is never trained on by default.
 */
export const equationResult: TaskGenerator = {
  name: 'eq_result',
  title: 'the result of equation j of the worked solution (eval only)',
  evalOnly: true,
  probe: true,
  unavailable,
  generate(q, _layer, ctx) {
    return equations(q.solution!).map((e, i) => ({
      key: `eq${i + 1}`,
      question: ctx.say('solution.result', `${q.id}/r${i}`, { j: i + 1 }),
      answer: say(e.result),
      vectors: allSteps(q),
      source: { equation: i + 1, expression: e.expression },
    }));
  },
};

/**
 * Equation operation (evaluation only): which operation calculation j uses (addition,
 * subtraction, multiplication, division); calculations that mix operations are left out.
 * Whether the latents encode how, not only what, was computed.
 */
export const equationOperation: TaskGenerator = {
  name: 'eq_operation',
  title: 'the operation of equation j of the worked solution (eval only)',
  evalOnly: true,
  probe: true,
  unavailable,
  generate(q, _layer, ctx) {
    const out: TaskDraft[] = [];
    equations(q.solution!).forEach((e, i) => {
      const op = operationOf(e.expression);
      if (op === null) return;
      out.push({
        key: `eq${i + 1}`,
        question: ctx.say('solution.operation', `${q.id}/o${i}`, { j: i + 1 }),
        answer: say(op),
        vectors: allSteps(q),
        source: { equation: i + 1, expression: e.expression },
      });
    });
    return out;
  },
};

/**
 * Number in solution (evaluation only): does the number x appear in the worked solution? One
 * number that does (from the annotations) and one that does not (the smallest integer above a
 * solution number that the solution never writes), so Yes and No are balanced.
 */
export const numberInSolution: TaskGenerator = {
  name: 'number_in_solution',
  title: 'whether a number appears in the worked solution (eval only)',
  evalOnly: true,
  unavailable,
  generate(q, _layer, ctx) {
    const present = new Set(numbersIn(q.solution!).map((n) => n.value));
    const eqs = equations(q.solution!).filter((e) => Number.isFinite(Number(e.result)));
    if (eqs.length === 0) return [];
    const yes = eqs[Math.floor(ctx.rand(`${q.id}/yes`) * eqs.length)].result;
    let no = Math.floor(Number(yes)) + 1;
    while (present.has(String(no))) no++;
    return [
      { key: 'yes', question: ctx.say('solution.contains', `${q.id}/y`, { x: yes }), answer: yesNo(true), vectors: allSteps(q), source: { number: yes } },
      { key: 'no', question: ctx.say('solution.contains', `${q.id}/n`, { x: String(no) }), answer: yesNo(false), vectors: allSteps(q), source: { number: String(no) } },
    ];
  },
};
