// The model-organism word problems (lib/organism/data.ts), their CLI, and the small BPE
// tokenizer trained on them (lib/organism/tokenizer.ts), loaded back by the engine.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { goldAnswer, isCorrect } from '../lib/core/answers.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { native } from '../lib/core/native.js';
import {
  chainOfThought,
  generateProblem,
  generateProblems,
  organismCorpus,
  problemKey,
  STEP_TEMPLATES,
  teacherText,
  templateIds,
  type OrganismProblem,
} from '../lib/organism/data.js';
import { BYTE_TO_UNICODE, ORGANISM_SPECIAL_TOKENS, preTokenize, trainOrganismTokenizer, UNMERGEABLE, writeTokenizerGguf, type OrganismTokenizer } from '../lib/organism/tokenizer.js';
import { equations } from '../lib/tasks/solution.js';
import { expectUserError, runCli, type CliResult } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-organism-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const many = generateProblems({ seed: 7, n: 600 });
const numbersOf = (s: string) => (s.match(/\d+/g) ?? []).map(Number);
const words = (s: string) => s.split(/\s+/).filter(Boolean).length;

function calc(op: string, a: number, b: number): number {
  return op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b;
}

describe('generateProblems', () => {
  test('deterministic for a seed; problem i does not depend on n; ids and seed recorded', () => {
    const a = generateProblems({ seed: 7, n: 50 });
    expect(generateProblems({ seed: 7, n: 50 })).toEqual(a);
    expect(many.slice(0, 50)).toEqual(a);
    expect(generateProblem(7, 13)).toEqual(a[13]);
    expect(a.map((p) => p.id)).toEqual(a.map((_, i) => `org-7-${i}`));
    expect(a.every((p) => p.seed === 7)).toBe(true);
    // Seeds beyond 32 bits are their own streams too.
    expect(generateProblems({ seed: 2 ** 40 + 7, n: 5 }).map((p) => p.question)).not.toEqual(a.slice(0, 5).map((p) => p.question));
  });

  test('different seeds give different problems (few shared programs)', () => {
    const b = generateProblems({ seed: 8, n: 600 });
    const keys = new Set(many.map(problemKey));
    const shared = b.filter((p) => keys.has(problemKey(p))).length;
    expect(shared).toBeLessThan(12); // < 2%
    const questions = new Set(many.map((p) => p.question));
    expect(b.filter((p) => questions.has(p.question)).length).toBeLessThan(6);
    // Within one seed the problems vary too.
    expect(keys.size).toBeGreaterThan(590);
  });

  test('every value an integer in 0..99; the program chains from the start value; division exact; small factors', () => {
    for (const p of many) {
      expect(Number.isInteger(p.start) && p.start >= 0 && p.start <= 99).toBe(true);
      let v = p.start;
      p.program.forEach((s, i) => {
        expect(s.step).toBe(i);
        expect(s.operands[0]).toBe(v);
        for (const x of [...s.operands, s.result]) expect(Number.isInteger(x) && x >= 0 && x <= 99, `${p.id}: ${x}`).toBe(true);
        expect(s.result).toBe(calc(s.op, s.operands[0], s.operands[1]));
        if (s.op === '/') {
          expect(s.operands[0] % s.operands[1], p.id).toBe(0);
          expect(s.operands[1]).toBeGreaterThanOrEqual(2);
          expect(s.operands[1]).toBeLessThanOrEqual(5);
        }
        if (s.op === '*') expect([2, 3, 4, 5]).toContain(s.operands[1]);
        expect(p.question).toContain(s.sentence);
        v = s.result;
      });
    }
    const ops = new Set(many.flatMap((p) => p.program.map((s) => s.op)));
    expect([...ops].sort()).toEqual(['*', '+', '-', '/']);
  });

  test('the <<a op b=r>> annotations are the program, #### is the last result, and lib/ reads them so', () => {
    for (const p of many) {
      const eqs = equations(p.answer);
      expect(eqs).toEqual(p.program.map((s) => ({ expression: `${s.operands[0]}${s.op}${s.operands[1]}`, result: String(s.result) })));
      const last = p.program[p.program.length - 1].result;
      expect(goldAnswer(p.answer)).toBe(String(last));
      expect(isCorrect(`The answer is: ${last}`, goldAnswer(p.answer)!)).toBe(true);
      expect(chainOfThought(p.answer)).toBe(p.program.map((s) => `<<${s.operands[0]}${s.op}${s.operands[1]}=${s.result}>>`).join(' '));
      expect(p.answer.startsWith(`${p.question.split('. ')[0]}.`)).toBe(true);
    }
    const p = many[0];
    expect(teacherText(p)).toBe(`${p.question} ${chainOfThought(p.answer)} The answer is: ${goldAnswer(p.answer)}`);
  });

  test('step counts: 2..4 by default, and as asked', () => {
    const counts = new Set(many.map((p) => p.steps));
    expect([...counts].sort()).toEqual([2, 3, 4]);
    for (const p of many) {
      expect(p.program).toHaveLength(p.steps);
      expect(p.template).toHaveLength(p.steps);
    }
    expect(generateProblems({ seed: 1, n: 40, minSteps: 3, maxSteps: 3 }).every((p) => p.steps === 3)).toBe(true);
    const six = generateProblems({ seed: 1, n: 40, minSteps: 6, maxSteps: 6 });
    expect(six.every((p) => p.steps === 6 && equations(p.answer).length === 6)).toBe(true);
    expect(() => generateProblems({ seed: 1, n: 1, minSteps: 4, maxSteps: 2 })).toThrow(/minSteps/);
    expect(() => generateProblems({ seed: 1, n: 1, maxSteps: 7 })).toThrow(/maxSteps/);
    expect(() => generateProblems({ seed: -1, n: 1 })).toThrow(/seed/);
  });

  test('short, regular questions: first sentence, question sentence, word budget', () => {
    for (const p of many) {
      expect(words(p.question), p.question).toBeLessThanOrEqual(45);
      const m = /^([A-Z][a-z]+) has (\d+) ([a-z]+)\. /.exec(p.question);
      expect(m, p.question).not.toBeNull();
      expect(Number(m![2])).toBe(p.start);
      expect(p.program.every((s) => s.quantity === m![3])).toBe(true);
      expect(p.question.endsWith(` How many ${m![3]} does ${m![1]} have now?`)).toBe(true);
    }
  });

  test('distractors: only numbers outside the chain; none when turned off', () => {
    // The numbers a step sentence writes: its operand, unless the phrasing fixes it ("doubles").
    const fixed = new Set(STEP_TEMPLATES.filter((t) => t.fixed !== undefined).map((t) => t.id));
    const written = (p: OrganismProblem) => [p.start, ...p.program.filter((_, i) => !fixed.has(p.template[i])).map((s) => s.operands[1])];
    const plain = generateProblems({ seed: 7, n: 300, distractors: false });
    for (const p of plain) {
      expect(numbersOf(p.question)).toEqual(written(p));
      expect(p.question.split(/(?<=[.?]) /)).toHaveLength(p.steps + 2);
    }
    let withDistractor = 0;
    for (const p of many) {
      const sentences = p.question.split(/(?<=[.?]) /).length;
      if (sentences > p.steps + 2) withDistractor++;
      const chain = new Set([p.start, ...p.program.flatMap((s) => [...s.operands, s.result])]);
      const extra = numbersOf(p.question).slice();
      for (const x of written(p)) extra.splice(extra.indexOf(x), 1);
      for (const x of extra) expect(chain.has(x), `${p.id}: distractor number ${x} is in the chain`).toBe(false);
    }
    // ~0.3 per gap over 3-5 gaps: most problems have one (some are trimmed to fit the word budget).
    expect(withDistractor / many.length).toBeGreaterThan(0.4);
    expect(withDistractor / many.length).toBeLessThan(0.95);
  });

  test('template split: train problems never use a held-out phrasing; heldout problems always do', () => {
    const held = new Set(templateIds('heldout'));
    for (const op of ['+', '-', '*', '/']) {
      const ts = STEP_TEMPLATES.filter((t) => t.op === op);
      expect(ts.length).toBeGreaterThanOrEqual(3);
      expect(ts.some((t) => t.heldout)).toBe(true);
      expect(ts.filter((t) => !t.heldout).length).toBeGreaterThanOrEqual(2);
    }
    const train = generateProblems({ seed: 3, n: 400, templates: 'train' });
    for (const p of train) {
      expect(p.template.some((t) => held.has(t)), p.id).toBe(false);
      expect(p.heldout).toBe(false);
      // The held-out wordings do not leak through any other sentence.
      expect(p.question).not.toMatch(/lends|multiplies|divides|friend gives/);
    }
    expect(new Set(train.flatMap((p) => p.template)).size).toBe(templateIds('train').length);
    const heldout = generateProblems({ seed: 3, n: 400, templates: 'heldout' });
    for (const p of heldout) {
      expect(p.template.some((t) => held.has(t)), p.id).toBe(true);
      expect(p.heldout).toBe(true);
    }
    expect(new Set(heldout.flatMap((p) => p.template.filter((t) => held.has(t)))).size).toBe(held.size);
    expect(new Set(many.flatMap((p) => p.template)).size).toBe(STEP_TEMPLATES.length);
  });

  test('problemKey: same program and phrasing give the same key; names and distractors do not count', () => {
    const p = many[3];
    const renamed: OrganismProblem = { ...p, question: 'x', id: 'other' };
    expect(problemKey(renamed)).toBe(problemKey(p));
    expect(problemKey({ ...p, start: p.start + 1 })).not.toBe(problemKey(p));
    expect(problemKey({ ...p, template: p.template.map((t, i) => (i === 0 ? 'other' : t)) })).not.toBe(problemKey(p));
    // Dropping test problems seen in train, as a caller would.
    const trainKeys = new Set(generateProblems({ seed: 1, n: 300, minSteps: 2, maxSteps: 2, templates: 'train' }).map(problemKey));
    const test2 = generateProblems({ seed: 2, n: 300, minSteps: 2, maxSteps: 2, templates: 'train' });
    const kept = test2.filter((q) => !trainKeys.has(problemKey(q)));
    expect(kept.length).toBeGreaterThan(280);
    expect(kept.every((q) => !trainKeys.has(problemKey(q)))).toBe(true);
  });
});

describe('lro-native organism data', () => {

  test('writes N lines equal to generateProblems; refuses an existing --out unless --overwrite', async () => {
    const out = join(tmp, 'org.jsonl');
    const r = await runCli(['organism', 'data', '--seed', '5', '--n', '30', '--steps', '3', '--templates', 'train', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(30);
    expect(lines.map((l) => JSON.parse(l))).toEqual(generateProblems({ seed: 5, n: 30, minSteps: 3, maxSteps: 3, templates: 'train' }));
    expect(r.stderr).toMatch(/wrote 30 problems/);

    writeFileSync(out, 'keep me\n');
    expectUserError(await runCli(['organism', 'data', '--seed', '5', '--n', '30', '--out', out]), /already exists; pass --overwrite/);
    expect(readFileSync(out, 'utf8')).toBe('keep me\n');

    const r2 = await runCli(['organism', 'data', '--seed', '6', '--n', '4', '--no-distractors', '--out', out, '--overwrite', '-q']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toBe('');
    expect(readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))).toEqual(generateProblems({ seed: 6, n: 4, distractors: false }));
  });

  test('bad flags: one-line errors', async () => {
    const out = join(tmp, 'bad.jsonl');
    expectUserError(await runCli(['organism', 'data', '--n', '3', '--steps', '2-9', '--out', out]), /--steps.*within 1\.\.6/);
    expectUserError(await runCli(['organism', 'data', '--n', '3', '--steps', '4-2', '--out', out]), /--steps/);
    expectUserError(await runCli(['organism', 'data', '--n', '3', '--templates', 'test', '--out', out]), /--templates/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('organism tokenizer', () => {
  const problems = generateProblems({ seed: 11, n: 300 });
  const corpus = organismCorpus(problems);
  let tok: OrganismTokenizer;
  let model: Model;
  const path = join(tmp, 'organism-vocab.gguf');

  beforeAll(async () => {
    tok = trainOrganismTokenizer(corpus);
    writeTokenizerGguf(path, tok, [{ key: 'general.name', type: 'string', value: 'organism-test' }]);
    model = await loadModel(path, { vocabOnly: true });
  });
  afterAll(() => model?.dispose());

  test('layout: bytes in byte order, merges, then the special tokens; deterministic', () => {
    expect(tok.tokens).toHaveLength(384);
    expect(tok.tokens.slice(0, 256)).toEqual(BYTE_TO_UNICODE);
    expect(tok.tokens[32]).toBe('Ġ');
    expect(tok.tokens.slice(-6)).toEqual([...ORGANISM_SPECIAL_TOKENS]);
    expect(tok.tokenTypes.slice(0, -6).every((t) => t === 1)).toBe(true);
    expect(tok.tokenTypes.slice(-6)).toEqual([3, 3, 3, 3, 3, 3]);
    expect(tok.merges).toHaveLength(384 - 262);
    expect(tok.specialIds).toEqual({ bos: 378, eos: 379, eot: 380, pad: 381, bot: 382, eotLatent: 383 });
    expect(trainOrganismTokenizer([...corpus])).toEqual(tok);
    // No learned token holds a digit or a calculator character.
    const learned = tok.tokens.slice(256, -6);
    expect(UNMERGEABLE).toBe('0123456789+-*/=<>#');
    for (const t of learned) for (const c of '0123456789+-*/=<>#') expect(t.includes(c), t).toBe(false);
    expect(() => trainOrganismTokenizer(corpus, { vocabSize: 100 })).toThrow(/vocabSize/);
  });

  test('the engine loads the vocab-only GGUF with its special tokens', () => {
    expect(model.info.vocabOnly).toBe(true);
    expect(model.info.name).toBe('organism-test');
    expect(model.info.tokenizer).toMatchObject({ model: 'gpt2', pre: 'llama-bpe', nTokens: 384, bos: 378, eos: 379, eot: 380, addBos: true, addEos: false });
    expect(model.tokenize('<|bot|><|eot_latent|>', { addBos: false, parseSpecial: true })).toEqual([382, 383]);
    expect(model.isEog(379) && model.isEog(380)).toBe(true);
  });

  test('extra metadata as a record of plain values', () => {
    const p = join(tmp, 'extra.gguf');
    writeTokenizerGguf(p, tok, { 'general.name': 'organism x', 'organism.seed': 11, 'organism.ratio': 0.5, 'organism.ok': true, 'organism.ids': [1, 2] });
    const md = native().inspectGguf(p).metadata;
    expect(md).toMatchObject({ 'general.name': 'organism x', 'general.architecture': 'llama', 'organism.seed': 11, 'organism.ratio': 0.5, 'organism.ok': true, 'organism.ids': [1, 2] });
    expect(md['tokenizer.ggml.merges']).toHaveLength(tok.merges.length);
    expect(existsSync(p) && !readdirSync(tmp).some((f) => f.includes('.tmp-'))).toBe(true);
  });

  test('round trip of every training text; every digit one token; compresses', () => {
    let tokens = 0;
    let bytes = 0;
    for (const text of corpus) {
      const ids = model.tokenize(text, { addBos: false });
      expect(model.detokenize(ids)).toBe(text);
      for (const id of ids) {
        const piece = model.detokenize([id]);
        if (/[\d+\-*/=<>#]/.test(piece)) expect(piece, text).toHaveLength(1);
      }
      expect(ids.filter((id) => /\d/.test(model.detokenize([id]))).length).toBe((text.match(/\d/g) ?? []).length);
    }
    for (const p of problems) {
      tokens += model.tokenize(p.question, { addBos: false }).length;
      bytes += Buffer.byteLength(p.question);
    }
    expect(tokens / bytes).toBeLessThan(0.55);
    // Unseen problems (another seed, held-out phrasings) round-trip as well.
    for (const p of generateProblems({ seed: 99, n: 50, templates: 'heldout' })) {
      const t = teacherText(p);
      expect(model.detokenize(model.tokenize(t, { addBos: false }))).toBe(t);
    }
  });

  test('numberTokens: every number 0..99 one token, larger ones split, text round-trips', async () => {
    const nt = trainOrganismTokenizer(corpus, { numberTokens: 99 });
    expect(nt.tokens.slice(256, 346)).toEqual(Array.from({ length: 90 }, (_, i) => String(i + 10)));
    expect(nt.merges[0]).toBe('1 0');
    const learned = nt.tokens.slice(346, -6);
    for (const t of learned) for (const c of '0123456789+-*/=<>#') expect(t.includes(c), t).toBe(false);
    const file = join(tmp, 'numbers-vocab.gguf');
    writeTokenizerGguf(file, nt);
    const m = await loadModel(file, { vocabOnly: true });
    try {
      for (let n = 0; n <= 99; n++) {
        const ids = m.tokenize(`<<${n}+1=${n + 1}>>`, { addBos: false });
        expect(m.detokenize([ids[2]])).toBe(String(n));
      }
      expect(m.tokenize('100', { addBos: false }).map((id) => m.detokenize([id]))).toEqual(['10', '0']);
      for (const p of problems.slice(0, 50)) {
        const t = teacherText(p);
        const ids = m.tokenize(t, { addBos: false });
        expect(m.detokenize(ids)).toBe(t);
        expect(ids.filter((id) => /\d/.test(m.detokenize([id]))).length).toBe((t.match(/\d+/g) ?? []).length);
      }
    } finally {
      m.dispose();
    }
    expect(() => trainOrganismTokenizer(corpus, { numberTokens: 100 })).toThrow(/numberTokens/);
  });

  test('the pre-tokenizer keeps digits apart from words', () => {
    expect(preTokenize('Mia has 7 shells. <<7+5=12>>')).toEqual(['Mia', ' has', ' ', '7', ' shells', '.', ' <<', '7', '+', '5', '=', '12', '>>']);
  });

  test('lro-native organism tokenizer writes the same tokenizer', async () => {
    const data = join(tmp, 'tok-data.jsonl');
    writeFileSync(data, problems.map((p) => JSON.stringify(p) + '\n').join(''));
    const out = join(tmp, 'cli-vocab.gguf');
    const r = await runCli(['organism', 'tokenizer', '--data', data, '--out', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    const m = await loadModel(out, { vocabOnly: true });
    try {
      const text = teacherText(problems[5]);
      expect(m.tokenize(text)).toEqual(model.tokenize(text));
    } finally {
      m.dispose();
    }
  });
});
