// Synthetic word problems for the "model organism": short, regular stories whose every
// intermediate value is known. A problem starts from one value ("Mia has 7 shells.") and chains
// 2-4 operations (+, -, *, / where exact) over it; every value stays an integer in 0..99.
// Records are GSM8K-shaped ("question", "answer" with <<a+b=c>> annotations and "#### N") plus
// the program itself, so the existing tools read them as they are.
import { InputError } from '../core/errors.js';
import { goldAnswer } from '../core/answers.js';
import { equations } from '../tasks/solution.js';

export type OrganismOp = '+' | '-' | '*' | '/';
export type TemplateSet = 'train' | 'heldout' | 'all';
export const TEMPLATE_SETS: readonly TemplateSet[] = ['train', 'heldout', 'all'];

export interface OrganismStep {
  op: OrganismOp;
  /** [running value before the step, the step's operand] */
  operands: [number, number];
  result: number;
  /** The question's sentence for this step, as written there. */
  sentence: string;
  quantity: string;
  /** 0-based */
  step: number;
}

export interface OrganismProblem {
  /** "org-<seed>-<index>" */
  id: string;
  question: string;
  /** "Mia has 7 shells. She finds 5 more, so 7+5=<<7+5=12>>12. ... #### 18" */
  answer: string;
  /** The operations only; the first value (start) is not a step. */
  program: OrganismStep[];
  /** Template id of each step, e.g. "add.find". */
  template: string[];
  seed: number;
  steps: number;
  /** The first value, from the first sentence. */
  start: number;
  /** Whether any step uses a held-out phrasing. */
  heldout: boolean;
}

export interface GenerateProblemsOptions {
  seed: number;
  n: number;
  /** default 2 */
  minSteps?: number;
  /** default 4 */
  maxSteps?: number;
  /** Unrelated sentences between steps (probability DISTRACTOR_RATE per gap); default true. */
  distractors?: boolean;
  /** train: train phrasings only; heldout: at least one held-out phrasing per problem; all: any. Default all. */
  templates?: TemplateSet;
  /** Word budget of a question with up to 4 steps (each further step adds 9); default 45. */
  maxWords?: number;
}

export const MAX_VALUE = 99;
export const MAX_STEPS = 6;
export const DISTRACTOR_RATE = 0.3;

// ------------------------------------------------------------------ seeded random numbers

const GOLDEN = 0x9e3779b9;

/** A 32-bit finaliser: every input bit affects every output bit. */
function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A Weyl sequence through mix32: small, fast, deterministic; one stream per (seed, index). */
export class OrganismRng {
  private state: number;

  constructor(seed: number, stream = 0) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new InputError(`seed must be a non-negative integer, got ${seed}`);
    const lo = seed % 0x100000000;
    const hi = Math.floor(seed / 0x100000000);
    let s = mix32(lo ^ 0x6a09e667);
    s = mix32((s ^ hi) + 0xbb67ae85);
    s = mix32((s ^ mix32(stream + 0x3c6ef372)) >>> 0);
    this.state = s;
  }

  /** uint32 */
  next(): number {
    this.state = (this.state + GOLDEN) >>> 0;
    return mix32(this.state);
  }

  /** [0, 1) */
  float(): number {
    return this.next() / 0x100000000;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)];
  }

  chance(p: number): boolean {
    return this.float() < p;
  }
}

// ------------------------------------------------------------------ vocabulary

interface Person {
  name: string;
  /** She / He */
  subject: string;
  /** her / him */
  object: string;
  /** Her / His */
  possessive: string;
}

const she = (name: string): Person => ({ name, subject: 'She', object: 'her', possessive: 'Her' });
const he = (name: string): Person => ({ name, subject: 'He', object: 'him', possessive: 'His' });

export const PEOPLE: readonly Person[] = [
  she('Mia'), he('Leo'), she('Ava'), he('Sam'), she('Zoe'), he('Max'),
  she('Lily'), he('Ben'), she('Emma'), he('Noah'), she('Ella'), he('Jack'),
];

export const OBJECTS: readonly string[] = ['shells', 'apples', 'stamps', 'marbles', 'cards', 'coins', 'stickers', 'pencils', 'books', 'cookies', 'beads', 'toys'];

const RELATIVES = ['brother', 'sister', 'cousin', 'friend'];

// ------------------------------------------------------------------ step phrasings

/** How a step sentence names the person: "She"/"she" or the name, and the object pronoun. */
interface Subject {
  /** "She" or "Mia" at the start of a sentence */
  S: string;
  /** "she" (always the pronoun: "what she has") */
  p: string;
  /** "her" or "Mia" as an object */
  O: string;
}

export interface StepTemplate {
  id: string;
  op: OrganismOp;
  /** Kept out of the 'train' set. */
  heldout: boolean;
  /** The only operand this phrasing expresses ("doubles": 2). */
  fixed?: number;
  render(s: Subject, b: number): string;
}

export const STEP_TEMPLATES: readonly StepTemplate[] = [
  { id: 'add.find', op: '+', heldout: false, render: (s, b) => `${s.S} finds ${b} more.` },
  { id: 'add.buy', op: '+', heldout: false, render: (s, b) => `${s.S} buys ${b} more.` },
  { id: 'add.get', op: '+', heldout: false, render: (s, b) => `${s.S} gets ${b} more from a friend.` },
  { id: 'add.receive', op: '+', heldout: true, render: (s, b) => `A friend gives ${s.O} ${b} more.` },

  { id: 'sub.give', op: '-', heldout: false, render: (s, b) => `${s.S} gives ${b} away.` },
  { id: 'sub.lose', op: '-', heldout: false, render: (s, b) => `${s.S} loses ${b} of them.` },
  { id: 'sub.sell', op: '-', heldout: false, render: (s, b) => `${s.S} sells ${b} of them.` },
  { id: 'sub.lend', op: '-', heldout: true, render: (s, b) => `${s.S} lends ${b} to a friend.` },

  { id: 'mul.double', op: '*', heldout: false, fixed: 2, render: (s) => `${s.S} doubles what ${s.p} has.` },
  { id: 'mul.triple', op: '*', heldout: false, fixed: 3, render: (s) => `${s.S} triples what ${s.p} has.` },
  { id: 'mul.times', op: '*', heldout: false, render: (s, b) => `${s.S} ends up with ${b} times as many.` },
  { id: 'mul.multiply', op: '*', heldout: true, render: (s, b) => `${s.S} multiplies them by ${b}.` },

  { id: 'div.half', op: '/', heldout: false, fixed: 2, render: (s) => `${s.S} keeps half of them.` },
  { id: 'div.groups', op: '/', heldout: false, render: (s, b) => `${s.S} splits them into ${b} equal groups and keeps one.` },
  { id: 'div.share', op: '/', heldout: false, render: (s, b) => `${s.S} keeps one of ${b} equal shares.` },
  { id: 'div.divide', op: '/', heldout: true, render: (s, b) => `${s.S} divides them by ${b}.` },
];

const TEMPLATE_BY_ID = new Map(STEP_TEMPLATES.map((t) => [t.id, t]));
const OPS: readonly OrganismOp[] = ['+', '-', '*', '/'];

/** The operands op can take on the running value v, keeping the result an integer in 1..99. */
function operandChoices(op: OrganismOp, v: number): number[] {
  const out: number[] = [];
  switch (op) {
    case '+':
      for (let b = 1; b <= Math.min(20, MAX_VALUE - v); b++) out.push(b);
      break;
    case '-':
      for (let b = 1; b <= Math.min(20, v - 1); b++) out.push(b);
      break;
    case '*':
      for (let k = 2; k <= 5; k++) if (v * k <= MAX_VALUE) out.push(k);
      break;
    case '/':
      for (let k = 2; k <= 5; k++) if (v % k === 0 && v / k >= 1) out.push(k);
      break;
  }
  return out;
}

function apply(op: OrganismOp, a: number, b: number): number {
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    case '/': return a / b;
  }
}

// ------------------------------------------------------------------ distractors

type Distractor = (person: Person, k: number, rng: OrganismRng) => string;

const DISTRACTORS: readonly { numbered: boolean; make: Distractor }[] = [
  { numbered: true, make: (p, k, rng) => `${p.possessive} ${rng.pick(RELATIVES)} has ${k} ${rng.pick(OBJECTS)}.` },
  { numbered: true, make: (p, k, rng) => `${otherPerson(p, rng).name} has ${k} ${rng.pick(OBJECTS)}.` },
  { numbered: true, make: (p, k, rng) => `${otherPerson(p, rng).name} is ${k} years old.` },
  { numbered: false, make: (_p, _k, rng) => rng.pick(['It is sunny.', 'It is a rainy day.', 'The sky is blue.']) },
];

function otherPerson(p: Person, rng: OrganismRng): Person {
  const others = PEOPLE.filter((q) => q.name !== p.name);
  return rng.pick(others);
}

// ------------------------------------------------------------------ problems

function words(s: string): number {
  return s.split(/\s+/).filter(Boolean).length;
}

function annotation(op: OrganismOp, a: number, b: number, r: number): string {
  return `${a}${op}${b}=<<${a}${op}${b}=${r}>>${r}`;
}

interface Draft {
  start: number;
  ops: { template: StepTemplate; b: number; a: number; r: number; then: boolean }[];
}

function draftChain(rng: OrganismRng, steps: number, set: TemplateSet): Draft {
  const start = rng.int(2, 40);
  // 'heldout': one step (chosen up front) must use a held-out phrasing; the rest use any.
  const forced = set === 'heldout' ? rng.int(0, steps - 1) : -1;
  const ops: Draft['ops'] = [];
  let v = start;
  for (let i = 0; i < steps; i++) {
    const allowed = STEP_TEMPLATES.filter((t) => (set === 'train' ? !t.heldout : i === forced ? t.heldout : true));
    const feasible = (t: StepTemplate): number[] => {
      const c = operandChoices(t.op, v);
      return t.fixed !== undefined ? (c.includes(t.fixed) ? [t.fixed] : []) : c;
    };
    const byOp = OPS.map((op) => allowed.filter((t) => t.op === op && feasible(t).length > 0)).filter((ts) => ts.length > 0);
    // Addition or subtraction is always possible on 1..99 with some phrasing of every set.
    const template = rng.pick(rng.pick(byOp));
    const b = rng.pick(feasible(template));
    const r = apply(template.op, v, b);
    ops.push({ template, a: v, b, r, then: i > 0 && rng.chance(0.25) });
    v = r;
  }
  return { start, ops };
}

function render(s: Subject, t: StepTemplate, b: number, then: boolean, name: string): string {
  const sentence = t.render(s, b);
  if (!then) return sentence;
  const first = sentence.split(' ')[0];
  return `Then ${first === name ? sentence : sentence[0].toLowerCase() + sentence.slice(1)}`;
}

/** One problem: problem `index` of `seed` does not depend on how many are generated. */
export function generateProblem(seed: number, index: number, options: Omit<GenerateProblemsOptions, 'seed' | 'n'> = {}): OrganismProblem {
  const o = checkOptions({ seed, n: 1, ...options });
  const rng = new OrganismRng(seed, index);
  const budget = o.maxWords + 9 * Math.max(0, o.maxSteps - 4);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const person = rng.pick(PEOPLE);
    const quantity = rng.pick(OBJECTS);
    const steps = rng.int(o.minSteps, o.maxSteps);
    const chain = draftChain(rng, steps, o.templates);
    const used = new Set<number>([chain.start, ...chain.ops.flatMap((s) => [s.b, s.r])]);
    // Gaps: before each step and before the question.
    const gaps: (string | null)[] = [];
    for (let g = 0; g <= steps; g++) {
      if (!o.distractors || !rng.chance(DISTRACTOR_RATE)) {
        gaps.push(null);
        continue;
      }
      const kind = rng.pick(DISTRACTORS);
      let k = rng.int(2, 20);
      while (kind.numbered && used.has(k)) k = rng.int(2, 20);
      if (kind.numbered) used.add(k);
      gaps.push(kind.make(person, k, rng));
    }
    const first = `${person.name} has ${chain.start} ${quantity}.`;
    const question = `How many ${quantity} does ${person.name} have now?`;
    const build = () => {
      const parts = [first];
      const sentences: string[] = [];
      chain.ops.forEach((s, i) => {
        if (gaps[i] !== null) parts.push(gaps[i]!);
        // After an unrelated sentence the pronoun could point at someone else: use the name.
        const named = gaps[i] !== null;
        const subj: Subject = { S: named ? person.name : person.subject, p: person.subject.toLowerCase(), O: named ? person.name : person.object };
        const sentence = render(subj, s.template, s.b, s.then, person.name);
        sentences.push(sentence);
        parts.push(sentence);
      });
      if (gaps[steps] !== null) parts.push(gaps[steps]!);
      parts.push(question);
      return { text: parts.join(' '), sentences };
    };
    let built = build();
    // Over the budget: drop distractors (last first), then try another problem.
    for (let g = steps; g >= 0 && words(built.text) > budget; g--) {
      if (gaps[g] === null) continue;
      gaps[g] = null;
      built = build();
    }
    if (words(built.text) > budget) continue;

    const program: OrganismStep[] = chain.ops.map((s, i) => ({
      op: s.template.op,
      operands: [s.a, s.b],
      result: s.r,
      sentence: built.sentences[i],
      quantity,
      step: i,
    }));
    const final = program[program.length - 1].result;
    const worked = program.map((s) => `${s.sentence.slice(0, -1)}, so ${annotation(s.op, s.operands[0], s.operands[1], s.result)}.`);
    return {
      id: `org-${seed}-${index}`,
      question: built.text,
      answer: `${first} ${worked.join(' ')} #### ${final}`,
      program,
      template: chain.ops.map((s) => s.template.id),
      seed,
      steps,
      start: chain.start,
      heldout: chain.ops.some((s) => s.template.heldout),
    };
  }
  throw new InputError(`organism: no problem of ${o.minSteps}-${o.maxSteps} steps fits in ${budget} words; raise maxWords`);
}

type CheckedOptions = Required<GenerateProblemsOptions>;

function checkOptions(options: GenerateProblemsOptions): CheckedOptions {
  const o: CheckedOptions = {
    minSteps: 2,
    maxSteps: 4,
    distractors: true,
    templates: 'all',
    maxWords: 45,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  } as CheckedOptions;
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new InputError(`organism: seed must be a non-negative integer, got ${o.seed}`);
  if (!Number.isSafeInteger(o.n) || o.n < 0) throw new InputError(`organism: n must be a non-negative integer, got ${o.n}`);
  for (const k of ['minSteps', 'maxSteps'] as const)
    if (!Number.isInteger(o[k]) || o[k] < 1 || o[k] > MAX_STEPS) throw new InputError(`organism: ${k} must be an integer in 1..${MAX_STEPS}, got ${o[k]}`);
  if (o.minSteps > o.maxSteps) throw new InputError(`organism: minSteps (${o.minSteps}) is above maxSteps (${o.maxSteps})`);
  if (!TEMPLATE_SETS.includes(o.templates)) throw new InputError(`organism: templates must be one of ${TEMPLATE_SETS.join(', ')}, got ${String(o.templates)}`);
  if (!Number.isInteger(o.maxWords) || o.maxWords < 1) throw new InputError(`organism: maxWords must be a positive integer, got ${o.maxWords}`);
  return o;
}

/** n problems of one seed, deterministic; problem i is the same whatever n is. */
export function generateProblems(options: GenerateProblemsOptions): OrganismProblem[] {
  const o = checkOptions(options);
  const out: OrganismProblem[] = [];
  for (let i = 0; i < o.n; i++) out.push(generateProblem(o.seed, i, o));
  return out;
}

/**
 * A canonical string of a problem's computation and phrasing: start value, each step's
 * operation, operand, result and template. Names, objects and distractors are left out, so
 * two problems with the same key differ only in surface details; drop test problems whose key
 * occurs in train.
 */
export function problemKey(r: Pick<OrganismProblem, 'start' | 'program' | 'template'>): string {
  const steps = r.program.map((s, i) => `${s.op}${s.operands[1]}=${s.result}@${r.template[i]}`);
  return `${r.start}|${steps.join('|')}`;
}

/** The chain of thought the existing tools read: the answer's <<a op b=r>> annotations joined by single spaces. */
export function chainOfThought(answer: string): string {
  return equations(answer)
    .map((e) => `<<${e.expression}=${e.result}>>`)
    .join(' ');
}

/** The teacher text of one problem: question, chain of thought, and "The answer is: N". */
export function teacherText(r: Pick<OrganismProblem, 'question' | 'answer'>): string {
  return `${r.question} ${chainOfThought(r.answer)} The answer is: ${goldAnswer(r.answer)}`;
}

/** The tokenizer corpus: every question and every full teacher text. */
export function organismCorpus(records: readonly Pick<OrganismProblem, 'question' | 'answer'>[]): string[] {
  return records.flatMap((r) => [r.question, teacherText(r)]);
}

/** Template ids by set ('heldout' lists the held-out phrasings only). */
export function templateIds(set: TemplateSet): string[] {
  return STEP_TEMPLATES.filter((t) => (set === 'all' ? true : set === 'heldout' ? t.heldout : !t.heldout)).map((t) => t.id);
}

export function stepTemplate(id: string): StepTemplate | undefined {
  return TEMPLATE_BY_ID.get(id);
}
