// trace, eval, run and the reasoning capture, end to end through the CLI: on the codi-tiny golden
// checkpoint (converted here) against the Reasoner and the HF goldens, and on the built-in demo
// model generated into a fresh cache (the "no download" path).
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { convertHf } from '../lib/engine/convert.js';
import {
  InputError,
  loadModel,
  readCaptureManifest,
  reason,
  reasonStream,
  trace,
  traceLine,
  LatentHead,
  type Model,
  type ReasonResult,
} from '../lib/index.js';
import { goldAnswer, isCorrect, lastNumber } from '../lib/core/answers.js';
import { Reasoner } from '../lib/reasoning/reasoner.js';
import { textSource } from '../lib/core/content-hash.js';
import { expectUserError, runCli, type CliResult } from './helpers/cli.js';
import { golden, modelPath, sharedFile } from './helpers/paths.js';
import { f32, i64, readSt, type StFile } from './helpers/safetensors.js';
import { builtinModel } from '../lib/engine/demo-model.js';
import { native } from '../lib/core/native.js';
import { relRow } from './helpers/compare.js';

// Latent steps of the built-in organism's head.
const BUILTIN_STEPS = Number(native().inspectGguf(builtinModel().latentHead).metadata['lro.latent.steps']);

interface Question {
  question: string;
  gold_answer: string;
  prompt_ids: number[];
  answer_ids: number[];
  answer_decode_trace: { margin: number }[];
}

const D = 256;
const N = 6;
const THREADS = '2';
const tmp = mkdtempSync(join(tmpdir(), 'lro-reasoning-'));
// A fresh cache: the demo model is generated here on first use, as on a new machine.
const env = { LRO_CACHE: join(tmp, 'cache') };
process.env.LRO_CACHE = env.LRO_CACHE;
const codiPath = join(tmp, 'codi-tiny.f32.gguf');
const dataPath = join(tmp, 'codi-questions.jsonl');
const gsm8k = () => sharedFile('data', 'gsm8k', 'test.jsonl');
let model: Model;
let g: StFile;
let questions: Question[];
/** What the Reasoner gives in-process, with the options the CLI runs below use. */
const results: ReasonResult[] = [];
const TRACE_OPTS = { maxAnswerTokens: 12, earlyDecode: true, ablations: ['zero' as const], noReasoning: true, lensTopK: 10 };

const cli = (args: string[]) => runCli(args, { env });



/** Tokens agree up to the first reference step whose top1-top2 margin is below 0.05 (a near-tie may flip). */
function expectDecode(ours: number[], ref: number[], trace: { margin: number }[], what: string) {
  let firstTie = trace.findIndex((t) => t.margin < 0.05);
  if (firstTie < 0) firstTie = Infinity;
  const n = Math.min(firstTie, Math.max(ours.length, ref.length));
  expect(ours.slice(0, n), what).toEqual(ref.slice(0, n));
}

const readLines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

beforeAll(async () => {
  await convertHf(golden('hf', 'codi-tiny'), codiPath, { type: 'f32', source: 'model.safetensors' });
  model = await loadModel(codiPath);
  g = readSt(golden('hf', 'codi-tiny.reasoning.safetensors'));
  questions = (JSON.parse(readFileSync(golden('hf', 'codi-tiny.reasoning.json'), 'utf8')) as { questions: Question[] }).questions;
  writeFileSync(dataPath, questions.map((q) => JSON.stringify({ question: q.question, answer: `worked solution\n#### ${q.gold_answer}` })).join('\n') + '\n');
  const reasoner = new Reasoner(model, LatentHead.find(model)!, model.createSession({ nCtx: 512, threads: 2 }));
  for (const q of questions) results.push(await reasoner.reason(q.question, TRACE_OPTS));
}, 120_000);

afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('trace', () => {
  test('codi-tiny: each line equals the Reasoner run, and the answers and logit lens match HF', async () => {
    const out = join(tmp, 'codi.jsonl');
    const r = await cli(['trace', '-m', codiPath, '--data', dataPath, '--max-answer-tokens', '12', '--early-decode', '--ablations', 'zero', '--no-reasoning', '--top-k', '10', '--threads', THREADS, '-o', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/trace: 8 questions traced into .*codi\.jsonl/);
    const text = readFileSync(out, 'utf8').split('\n').filter(Boolean);
    expect(text).toHaveLength(8);
    questions.forEach((q, i) => {
      // The whole line, byte for byte, as the library's traceLine of the in-process result.
      expect(text[i]).toBe(JSON.stringify(traceLine({ id: String(i), text: q.question }, q.gold_answer, results[i])));
      const line = JSON.parse(text[i]);
      expect(line).toMatchObject({ id: String(i), question: q.question, gold: q.gold_answer, prompt_tokens: q.prompt_ids });
      expect(line.correct).toBe(isCorrect(line.answer, q.gold_answer));
      expectDecode(line.answer_tokens, q.answer_ids, q.answer_decode_trace, `q${i} answer`);
      expect(line.steps.map((s: { step: number }) => s.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      expect(line.steps[0].cosine_to_prev).toBeNull();
      const ids = i64(g, `q${i}.lens_top_ids`);
      line.steps.forEach((s: { top_k: { id: number }[] }, k: number) => expect(s.top_k.map((t) => t.id)).toEqual(ids.slice(k * 10, k * 10 + 10)));
      expect(line.early_decodes.map((e: { latents: number }) => e.latents)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      expect(line.early_decodes[6].answer_tokens).toEqual(line.answer_tokens);
      expect(line.ablations.zero.map((a: { step: number }) => a.step)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(line.no_reasoning_answer_tokens).toEqual(results[i].noReasoning!.answerTokens);
    });
  });

  test('demo model, fresh cache: a rerun after a cut-off last line gives the uninterrupted file', async () => {
    const args = (out: string, limit: number) => ['trace', '--data', gsm8k(), '--limit', String(limit), '--ablations', 'zero,skip,noise', '--early-decode', '--no-reasoning', '--seed', '3', '--threads', THREADS, '-o', out];
    const full = join(tmp, 'demo-full.jsonl');
    const a = await cli(args(full, 4));
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toMatch(/using the built-in model organism/);
    const want = readFileSync(full, 'utf8');
    const lines = readLines(full);
    expect(lines).toHaveLength(4);
    expect(lines[0].gold).toBe('18');
    expect(Object.keys(lines[0].ablations).sort()).toEqual(['noise', 'skip', 'zero']);
    expect(lines[0].ablations.noise).toHaveLength(BUILTIN_STEPS);

    const part = join(tmp, 'demo-part.jsonl');
    const b = await cli(args(part, 2));
    expect(b.code, b.stderr).toBe(0);
    // A run killed in the middle of writing line 3.
    const third = want.split('\n')[2];
    appendFileSync(part, third.slice(0, Math.floor(third.length / 2)));
    const c = await cli(args(part, 4));
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/2 questions traced .*2 already there.*cut-off last line/);
    expect(readFileSync(part, 'utf8')).toBe(want);

    // Continuing with other settings would mix two kinds of lines in one file.
    const d = await cli([...args(part, 5).filter((x) => x !== '--early-decode'), '-q']);
    expectUserError(d, /demo-part\.jsonl was traced with other settings \(earlyDecode is true there, false now\)/);
  });

  test('library: an AbortSignal stops after a finished line; a rerun completes the same file', async () => {
    const { model: demoPath } = await (await import('../lib/engine/demo-model.js')).ensureDemoModel();
    const demo = await loadModel(demoPath);
    try {
      const records = ['Tom has 3 apples.', 'Sara buys 12 eggs.', 'A train goes 60 miles.', 'Ten cats.'].map((text, i) => ({ id: `q${i}`, text }));
      const opts = { ablations: ['zero' as const], earlyDecode: true, threads: 2 };
      const whole = join(tmp, 'lib-whole.jsonl');
      await trace(demo, records, { ...opts, out: whole });
      const out = join(tmp, 'lib-abort.jsonl');
      const ac = new AbortController();
      await expect(
        trace(demo, records, { ...opts, out, signal: ac.signal, onProgress: (p) => p.written === 2 && ac.abort() }),
      ).rejects.toMatchObject({ name: 'AbortError' });
      expect(readLines(out).map((l) => l.id)).toEqual(['q0', 'q1']);
      // What the lines do not show (seed, model) is checked from the settings file beside them.
      await expect(trace(demo, records, { ...opts, out, seed: 7 })).rejects.toThrow(/lib-abort\.jsonl was traced with other settings \(seed is 0 there, 7 now\)/);
      // Records from another source: refused by content, not by line number.
      await expect(trace(demo, records, { ...opts, out, source: textSource('other.jsonl', 'x') })).rejects.toThrow(/lib-abort\.jsonl was traced with other settings \(source is null there/);
      const s = await trace(demo, records, { ...opts, out });
      expect(s).toMatchObject({ written: 2, skipped: 2, lines: 4 });
      expect(readFileSync(out, 'utf8')).toBe(readFileSync(whole, 'utf8'));
    } finally {
      demo.dispose();
    }
  });

  test('--capture records the same runs as the trace lines', async () => {
    const out = join(tmp, 'with-capture.jsonl');
    const dir = join(tmp, 'trace-capture');
    const r = await cli(['trace', '-m', codiPath, '--data', dataPath, '--limit', '2', '--max-answer-tokens', '12', '--capture', dir, '--points', 'latent_proj,resid_post', '--layers', '3', '--positions', 'latent,eot', '--threads', THREADS, '-o', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    const m = await readCaptureManifest(dir);
    const lines = readLines(out);
    expect(m.records.map((x) => x.id)).toEqual(['0', '1']);
    m.records.forEach((rec, i) => {
      expect(rec.answerTokens).toEqual(lines[i].answer_tokens);
      const n = questions[i].prompt_ids.length;
      expect(rec.tensors['resid_post.3'].positions).toEqual([n, n + 1, n + 2, n + 3, n + 4, n + 5, n + 6]);
      expect(rec.tensors.latent_proj.positions).toEqual([n, n + 1, n + 2, n + 3, n + 4, n + 5]);
    });
  });
});

describe('capture through the reasoning loop', () => {
  test('codi-tiny --positions latent: latent_proj = HF e_k, resid_post.L and final_norm = HF states', async () => {
    const dir = join(tmp, 'cap-latent');
    const r = await cli(['capture', '-m', codiPath, '--data', dataPath, '--limit', '3', '--points', 'resid_post,final_norm,latent_proj', '--layers', 'all', '--positions', 'latent', '--max-answer-tokens', '12', '--threads', THREADS, '-o', dir, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/reasoning loop, 6 latent steps/);
    const m = await readCaptureManifest(dir);
    expect(m).toMatchObject({ version: 2, complete: true });
    expect(m.settings.positions).toEqual(['latent']);
    expect(m.settings.reasoning).toMatchObject({ mode: 'codi', latentSteps: 6, format: 'codi-answer-only', maxAnswerTokens: 12 });
    expect(m.settings.points).toEqual(['resid_post.0', 'resid_post.1', 'resid_post.2', 'resid_post.3', 'final_norm', 'latent_proj']);
    const shards = new Map<string, StFile>();
    const rows = (file: string, key: string) => {
      if (!shards.has(file)) shards.set(file, readSt(join(dir, file)));
      return f32(shards.get(file)!, key);
    };
    let worst = 0;
    m.records.forEach((rec, i) => {
      const q = questions[i];
      const n = q.prompt_ids.length;
      expect(rec.question).toBe(q.question);
      expect(rec.gold).toBe(q.gold_answer);
      expect(rec.answerTokens).toEqual(results[i].answerTokens);
      expect(rec.tokens).toEqual([...q.prompt_ids, ...new Array(N).fill(-1), 2002, ...rec.answerTokens!]);
      expect(rec.positionKinds).toEqual([...new Array(n - 1).fill('prompt'), 'bot', ...new Array(N).fill('latent'), 'eot', ...new Array(rec.answerTokens!.length).fill('answer')]);
      const latent = Array.from({ length: N }, (_, k) => n + k);
      for (const [point, t] of Object.entries(rec.tensors)) {
        expect(t.shape).toEqual([N, D]);
        expect(t.positions).toEqual(latent);
        const got = rows(t.file, t.key);
        // latent_proj row k = e_k fed at n+k; final_norm at n+k = h_{k+1}; resid_post.L as HF's one-pass states.
        const ref = point === 'latent_proj' ? f32(g, `q${i}.e`) : point === 'final_norm' ? f32(g, `q${i}.h`) : f32(g, `q${i}.${point}`);
        for (let k = 0; k < N; k++) {
          const refRow = point === 'latent_proj' ? k : point === 'final_norm' ? k + 1 : n + k;
          const e = relRow(got.subarray(k * D, (k + 1) * D), ref.subarray(refRow * D, (refRow + 1) * D));
          worst = Math.max(worst, e);
          expect(e, `q${i} ${point} latent ${k}`).toBeLessThan(1e-4);
        }
      }
    });
    expect(worst).toBeGreaterThan(0);
  });

  test('kinds and indices together, f16; --resume continues', async () => {
    const dir = join(tmp, 'cap-mixed');
    const base = ['capture', '-m', codiPath, '--data', dataPath, '--points', 'embed,logits', '--positions', '0-1,bot,eot', '--dtype', 'f16', '--max-answer-tokens', '4', '--threads', THREADS, '-o', dir, '-q'];
    expect((await cli([...base, '--limit', '1'])).code).toBe(0);
    const r = await cli([...base, '--limit', '2', '--resume']);
    expect(r.code, r.stderr).toBe(0);
    const m = await readCaptureManifest(dir);
    expect(m.records.map((x) => x.id)).toEqual(['0', '1']);
    m.records.forEach((rec, i) => {
      const n = questions[i].prompt_ids.length;
      expect(rec.tensors.embed).toMatchObject({ dtype: 'F16', shape: [4, D], positions: [0, 1, n - 1, n + N] });
      expect(rec.tensors.logits).toMatchObject({ shape: [4, 2003], positions: [0, 1, n - 1, n + N] });
    });
  });

  test('a plain model still captures plainly; --plain skips the latent loop', async () => {
    const dir = join(tmp, 'cap-plain');
    const r = await cli(['capture', '-m', codiPath, '--plain', '-p', 'A robe takes 2 bolts', '--points', 'final_norm', '--positions', '0,2', '-o', dir, '-q']);
    expect(r.code, r.stderr).toBe(0);
    const m = await readCaptureManifest(dir);
    expect(m.settings.reasoning).toBeNull();
    expect(m.records[0].positionKinds).toBeUndefined();
    expect(m.records[0].tensors.final_norm).toMatchObject({ shape: [2, D], positions: [0, 2] });
  });

  test('the manifest schema refuses inconsistent reasoning records, naming the field', async () => {
    const src = await readCaptureManifest(join(tmp, 'cap-latent'));
    const bad = join(tmp, 'bad-manifest');
    mkdirSync(bad, { recursive: true });
    const write = (m: unknown) => writeFileSync(join(bad, 'manifest.json'), JSON.stringify(m));
    const rec = src.records[0];
    write({ ...src, records: [{ ...rec, positionKinds: undefined }] });
    await expect(readCaptureManifest(bad)).rejects.toThrow(/records\.0\.tokens\.\d+: is -1, but the record has no positionKinds/);
    write({ ...src, records: [{ ...rec, positionKinds: rec.positionKinds!.slice(1) }] });
    await expect(readCaptureManifest(bad)).rejects.toThrow(/records\.0\.positionKinds: has \d+ entries but the record has \d+ tokens/);
    const t = rec.tensors.latent_proj;
    write({ ...src, records: [{ ...rec, tensors: { latent_proj: { ...t, positions: t.positions!.slice(1) } } }] });
    await expect(readCaptureManifest(bad)).rejects.toThrow(/records\.0\.tensors\.latent_proj\.shape: has 6 rows but 5 positions/);
  });
});

describe('eval and run', () => {
  test('eval --json on codi-tiny counts what the Reasoner answers', async () => {
    const r = await cli(['eval', '-m', codiPath, '--data', dataPath, '--max-answer-tokens', '12', '--threads', THREADS, '--json', '-q']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const want = questions.filter((q, i) => isCorrect(results[i].answer, q.gold_answer)).length;
    const wantNo = questions.filter((q, i) => isCorrect(results[i].noReasoning!.answer, q.gold_answer)).length;
    expect(s).toMatchObject({ questions: 8, graded: 8, latentSteps: 6, interrupted: false, demo: false });
    expect(s.withLatents).toEqual({ correct: want, accuracy: want / 8 });
    expect(s.withoutLatents).toEqual({ correct: wantNo, accuracy: wantNo / 8 });
    expect(s.questionsPerSecond).toBeGreaterThan(0);
  });

  test('eval --out keeps results as trace lines; a rerun continues and counts the whole file', async () => {
    const out = join(tmp, 'eval.jsonl');
    const args = ['eval', '-m', codiPath, '--data', dataPath, '--max-answer-tokens', '12', '--threads', THREADS, '--json', '-q', '--out', out];
    const a = await cli([...args, '--limit', '3']);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ questions: 3, questionsThisRun: 3 });
    const b = await cli(args);
    expect(b.code, b.stderr).toBe(0);
    const s = JSON.parse(b.stdout);
    const want = questions.filter((q, i) => isCorrect(results[i].answer, q.gold_answer)).length;
    expect(s).toMatchObject({ questions: 8, questionsThisRun: 5, graded: 8, withLatents: { correct: want } });
    const lines = readLines(out);
    expect(lines.map((l) => l.answer_tokens)).toEqual(results.map((r) => r.answerTokens));
    expect(lines.map((l) => l.no_reasoning_answer_tokens)).toEqual(results.map((r) => r.noReasoning!.answerTokens));
  });

  test('eval on the demo model prints a readable summary', async () => {
    const r = await cli(['eval', '--data', gsm8k(), '--limit', '3', '--latent-steps', '3', '--threads', THREADS]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/eval: 3 questions from test\.jsonl, 3 with a "#### X" answer/);
    expect(r.stdout).toMatch(/the built-in model organism/);
    expect(r.stdout).toMatch(/with 3 latent steps +\d\/3 correct/);
    expect(r.stdout).toMatch(/without latent steps +\d\/3 correct/);
    expect(r.stdout).toMatch(/throughput [\d.]+ questions\/s/);
  });

  test('run on the demo model: steps, drift, early decodes, the answer', async () => {
    const r = await cli(['run', 'Janet has 3 apples and buys 5 more. How many?', '--ablations', 'zero', '--threads', THREADS]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/built-in model organism/);
    for (let k = 0; k <= BUILTIN_STEPS; k++) expect(r.stdout).toMatch(new RegExp(`^h${k} +\\d+\\.\\d+ `, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^drift +[▁▂▃▄▅▆▇█]{${BUILTIN_STEPS}} `, 'm'));
    expect(r.stdout).toMatch(/early decodes/);
    expect(r.stdout).toMatch(new RegExp(`k=${BUILTIN_STEPS} \\(answer\\)`));
    expect(r.stdout).toMatch(/zero ablation/);
    expect(r.stdout).toMatch(/^answer +"[^\n]*" +\(\d+ tokens, /m);
    expect(r.stdout).toMatch(/^no latents +"/m);
  });

  test('run --json on codi-tiny is the trace line of the same run', async () => {
    const q = questions[0];
    const r = await cli(['run', '-m', codiPath, q.question, '--max-answer-tokens', '12', '--top-k', '10', '--threads', THREADS, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const line = JSON.parse(r.stdout);
    expect(line.answer_tokens).toEqual(results[0].answerTokens);
    expect(line.early_decodes.map((e: { answer_tokens: number[] }) => e.answer_tokens)).toEqual(results[0].earlyDecodes.map((e) => e.answerTokens));
    expect(line.no_reasoning_answer_tokens).toEqual(results[0].noReasoning!.answerTokens);
  });

  test('run --intervene: the main run as the library runs it with the same interventions', async () => {
    const q = questions[0];
    const r = await cli(['run', '-m', codiPath, q.question, '--max-answer-tokens', '12', '--no-early-decode', '--threads', THREADS, '--json', '--intervene', 'zero:2,noise:4:0.5:3@resid_post.1']);
    expect(r.code, r.stderr).toBe(0);
    const line = JSON.parse(r.stdout);
    const lib = await reason(model, q.question, {
      maxAnswerTokens: 12,
      interventions: [{ kind: 'zero', step: 2 }, { kind: 'noise', step: 4, scale: 0.5, seed: 3, at: 'resid_post.1' }],
    });
    expect(line.answer_tokens).toEqual(lib.answerTokens);
    // zero at step 2 of the fed embeddings equals the golden zero ablation of step 2 up to step 4's noise
    expect(line.steps[3].norm).toBeCloseTo(results[0].ablations.zero![2].h[3].reduce((a, x) => a + x * x, 0) ** 0.5, 3);
    const bad = await cli(['run', '-m', codiPath, 'x', '--intervene', 'swap:1']);
    expectUserError(bad, /"swap:1": swap needs two steps/);
  });

  test('run --intervene noise:K without a seed is the trace noise ablation of step K with the same --seed', async () => {
    const q = questions[1];
    const seed = 5;
    const traced = await reason(model, q.question, { maxAnswerTokens: 12, ablations: ['noise'], seed });
    for (const k of [1, 3]) {
      const r = await cli(['run', '-m', codiPath, q.question, '--max-answer-tokens', '12', '--no-early-decode', '--seed', String(seed), '--threads', THREADS, '--json', '--intervene', `noise:${k}`]);
      expect(r.code, r.stderr).toBe(0);
      const ablated = traced.ablations.noise![k];
      expect(JSON.parse(r.stdout).answer_tokens).toEqual(ablated.answerTokens);
      // and the same latent states, not just the same answer
      expect(JSON.parse(r.stdout).steps[k + 1].norm).toBeCloseTo(Math.hypot(...ablated.h[k + 1]), 3);
    }
  });
});

describe('library', () => {
  test('reason() and model.reason() find the head and equal the Reasoner', async () => {
    const a = await reason(model, questions[1].question, { ...TRACE_OPTS, threads: 2 });
    expect(a.answerTokens).toEqual(results[1].answerTokens);
    expect(a.ablations.zero!.map((x) => x.answerTokens)).toEqual(results[1].ablations.zero!.map((x) => x.answerTokens));
    const b = await model.reason(questions[1].question, { maxAnswerTokens: 12, capture: ['latent_proj'], capturePositions: ['latent'] });
    expect(b.answerTokens).toEqual(results[1].answerTokens);
    expect(b.captures.latent_proj.data).toBeInstanceOf(Float32Array);
    expect(b.captures.latent_proj.data.length).toBe(N * D);
    await expect(reason(model, 'x', { latentSteps: -1 })).rejects.toThrow(/invalid reason options: latentSteps/);
  });

  test('meanLatentInputs averages e_k over a dataset; the mean intervention feeds it', async () => {
    const { meanLatentInputs } = await import('../lib/reasoning/reason.js');
    const means = await meanLatentInputs(model, [0, 1].map((i) => ({ id: String(i), text: questions[i].question })), { threads: 2 });
    expect(means.length).toBe(N);
    for (let k = 0; k < N; k++)
      for (let c = 0; c < D; c++) {
        const want = (results[0].steps[k].e[c] + results[1].steps[k].e[c]) / 2;
        expect(Math.abs(means[k][c] - want)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
      }
    const r = await reason(model, questions[2].question, { maxAnswerTokens: 4, interventions: [{ kind: 'mean', step: 3, vector: means[3] }] });
    expect(Array.from(r.steps[3].e)).toEqual(Array.from(means[3]));
    expect(Array.from(r.steps[2].e)).toEqual(Array.from(results[2].steps[2].e));
  });

  test('reasonStream: progress per record, AbortSignal cancels', async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    const records = questions.slice(0, 4).map((q, i) => ({ id: `r${i}`, text: q.question, answer: `#### ${q.gold_answer}` }));
    const it = reasonStream(model, records, {
      maxAnswerTokens: 12,
      threads: 2,
      signal: ac.signal,
      total: 4,
      onProgress: (p) => {
        seen.push(`${p.done}/${p.total}`);
        if (p.done === 2) ac.abort();
      },
    });
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const item of it) {
          got.push(item.record.id);
          expect(item.gold).toBe(questions[got.length - 1].gold_answer);
          expect(item.result.answerTokens).toEqual(results[got.length - 1].answerTokens);
        }
      })(),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(got).toEqual(['r0', 'r1']);
    expect(seen).toEqual(['1/4', '2/4']);
  });

  test('GSM8K answer rules', () => {
    expect(goldAnswer('Janet sells 9 eggs.\n#### 1,800')).toBe('1800');
    expect(goldAnswer('no marker')).toBeNull();
    expect(lastNumber('She makes $18.00 a day, or 126 a week.')).toBe('126');
    expect(isCorrect('The answer is 18.0', '18')).toBe(true);
    expect(isCorrect('-3', '-3')).toBe(true);
    expect(isCorrect('180', '18')).toBe(false);
    expect(isCorrect('none', '18')).toBe(false);
  });
});

describe('bad input: one line on stderr, exit code 1', () => {
  test('a model without a latent head', async () => {
    expectUserError(await cli(['trace', '-m', modelPath('f32'), '--data', dataPath, '-o', join(tmp, 'x.jsonl'), '-q']), /tiny-l3\.f32\.gguf has no latent head \(no sidecar .*--latent-head/);
    expectUserError(await cli(['eval', '-m', modelPath('f32'), '--data', dataPath, '-q']), /has no latent head/);
    expectUserError(await cli(['run', '-m', modelPath('f32'), 'question']), /has no latent head/);
    expectUserError(await cli(['capture', '-m', modelPath('f32'), '-p', 'x', '--positions', 'latent', '-o', join(tmp, 'y'), '-q']), /position kind "latent" exists only in the reasoning loop/);
    expectUserError(await cli(['capture', '-m', modelPath('f32'), '-p', 'x', '--points', 'latent_proj', '-o', join(tmp, 'y'), '-q']), /"latent_proj" exists only in the reasoning loop/);
  });

  test('bad latent head, flags and data', async () => {
    const m = ['-m', codiPath];
    expectUserError(await cli(['trace', ...m, '--latent-head', join(tmp, 'nope.gguf'), '--data', dataPath, '-o', join(tmp, 'x.jsonl')]), /latent head file not found: .*nope\.gguf/);
    expectUserError(await cli(['trace', ...m, '--latent-head', modelPath('f32'), '--data', dataPath, '-o', join(tmp, 'x.jsonl')]), /latent head: .*tiny-l3\.f32\.gguf: not a latent head/);
    expectUserError(await cli(['trace', ...m, '--data', dataPath, '--ablations', 'zero,bogus', '-o', join(tmp, 'x.jsonl')]), /ablations.*zero, skip, noise; got "bogus"/);
    expectUserError(await cli(['trace', ...m, '-o', join(tmp, 'x.jsonl')]), /trace: give exactly one of --data or --prompt/);
    expectUserError(await cli(['eval', ...m, '--data', join(tmp, 'none.jsonl')]), /data file not found: .*none\.jsonl/);
    expectUserError(await cli(['capture', ...m, '-p', 'x', '--positions', 'latents', '-o', join(tmp, 'z')]), /positions.*got "latents"/);
    expectUserError(await cli(['capture', ...m, '-p', 'x', '--layers', '0-9', '-o', join(tmp, 'z')]), /layer 4 is out of range/);
    expectUserError(await cli(['capture', ...m, '--plain', '--latent-head', join(tmp, 'codi-tiny.f32.latent.gguf'), '-p', 'x', '-o', join(tmp, 'z')]), /--plain and --latent-head/);
    const bad = join(tmp, 'bad.jsonl');
    writeFileSync(bad, '{"question": "What is 2+2?"}\n{"question": 7}\n');
    expectUserError(await cli(['trace', ...m, '--data', bad, '-o', join(tmp, 'bad-out.jsonl'), '-q']), /bad\.jsonl: line 2: expected a string field "question" or "prompt"/);
    const notTrace = join(tmp, 'not-a-trace.jsonl');
    writeFileSync(notTrace, '{"hello": 1}\n');
    expectUserError(await cli(['trace', ...m, '--data', dataPath, '-o', notTrace, '-q']), /not-a-trace\.jsonl: line 1 is not a trace line/);
  });

  test('InputError is exported for library callers', () => {
    expect(new InputError('x').code).toBe('ERR_LRO_INPUT');
  });
});
