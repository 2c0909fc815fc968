// The oracle task suite on the codi-tiny golden checkpoint (converted here): a real trace and
// capture of a few GSM8K questions, make-tasks over them, and every task's labels checked against
// what they came from: the trace line, the capture record, the dataset's worked solution, or a
// rerun of the Reasoner done here with the intervention the example names.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capture, readCaptureTensorF32 } from '../lib/capture/capture.js';
import { readCaptureManifest, type CaptureManifest, type CaptureRecordEntry } from '../lib/capture/capture-manifest.js';
import { convertHf } from '../lib/engine/convert.js';
import { InputError } from '../lib/core/errors.js';
import { readPromptJsonl } from '../lib/capture/jsonl.js';
import { LatentHead } from '../lib/reasoning/latent-head.js';
import { defaultLayers, makeTasks, type MakeTasksSummary } from '../lib/study/make-tasks.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { native } from '../lib/core/native.js';
import { OracleExampleSchema, VectorStore, type OracleExample } from '../lib/oracle/oracle-data.js';
import { Reasoner } from '../lib/reasoning/reasoner.js';
import { answerKey, firstSentence, sameAnswer } from '../lib/tasks/labels.js';
import { TASKS } from '../lib/tasks/registry.js';
import { assignSplits, SPLITS, type Split } from '../lib/tasks/split.js';
import { trace, type TraceLine } from '../lib/capture/trace.js';
import { golden, sharedFile } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-tasks-'));
const codiPath = join(tmp, 'codi-tiny.f32.gguf');
const dataPath = join(tmp, 'gsm8k-4.jsonl');
const tracesPath = join(tmp, 'traces.jsonl');
const capDir = join(tmp, 'capture');
const out = join(tmp, 'tasks');
const LAYERS = [1, 2, 3];
const MAX_ANSWER = 10;
let model: Model;
let head: LatentHead;
let reasoner: Reasoner;
let manifest: CaptureManifest;
let summary: MakeTasksSummary;
const traces = new Map<string, TraceLine>();
const records = new Map<string, CaptureRecordEntry>();
const solutions = new Map<string, string>();
const files: Record<Split, string> = { train: join(out, 'train.jsonl'), val: join(out, 'val.jsonl'), test: join(out, 'test.jsonl') };
const bySplit: Record<Split, OracleExample[]> = { train: [], val: [], test: [] };
let all: OracleExample[] = [];

const say = (s: string | number) => ' ' + String(s).trim();
const yn = (b: boolean) => (b ? ' Yes' : ' No');
const of = (task: string) => all.filter((e) => e.task === task);
const src = (e: OracleExample) => e.source as Record<string, unknown> & { record: string; layer: number; positions: number[]; steps?: number[] };
const latentPositions = (r: CaptureRecordEntry) => r.positionKinds!.flatMap((k, p) => (k === 'latent' ? [p] : []));
const readJsonl = (p: string) =>
  readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => OracleExampleSchema.parse(JSON.parse(l)));

/** The vectors of an example as stored, through the oracle format's own loader. */
async function vectorsOf(e: OracleExample): Promise<Float32Array> {
  return new VectorStore(files[e.split!]).load(e, model.info.nEmbd);
}

function rowsEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= 1e-6 * Math.max(1, Math.abs(b[i])));
}

beforeAll(async () => {
  await convertHf(golden('hf', 'codi-tiny'), codiPath, { type: 'f32', source: 'model.safetensors' });
  model = await loadModel(codiPath);
  head = LatentHead.find(model)!;
  reasoner = new Reasoner(model, head, model.createSession({ nCtx: 1024, threads: 2 }));
  const lines = readFileSync(sharedFile('data', 'gsm8k', 'test.jsonl'), 'utf8').split('\n').slice(0, 4);
  writeFileSync(dataPath, lines.join('\n') + '\n');
  lines.forEach((l, i) => solutions.set(String(i), (JSON.parse(l) as { answer: string }).answer));
  await trace(model, readPromptJsonl(dataPath), {
    out: tracesPath,
    earlyDecode: true,
    ablations: ['zero', 'skip', 'noise'],
    noReasoning: true,
    maxAnswerTokens: MAX_ANSWER,
    threads: 2,
  });
  await capture(model, readPromptJsonl(dataPath), {
    out: capDir,
    points: LAYERS.map((l) => `resid_post.${l}`),
    mode: 'reasoning',
    maxAnswerTokens: MAX_ANSWER,
    threads: 2,
  });
  for (const l of readFileSync(tracesPath, 'utf8').split('\n').filter(Boolean)) {
    const t = JSON.parse(l) as TraceLine;
    traces.set(t.id, t);
  }
  manifest = await readCaptureManifest(capDir);
  for (const r of manifest.records) records.set(r.id, r);
  summary = await makeTasks({ traces: tracesPath, capture: capDir, out, data: dataPath, split: [0.5, 0.25, 0.25], threads: 2 });
  for (const s of SPLITS) bySplit[s] = readJsonl(files[s]);
  all = [...bySplit.train, ...bySplit.val, ...bySplit.test];
}, 120_000);

afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('make-tasks output', () => {
  it('writes every task, at the default 25/50/75% layers, with a summary of counts per task and split', () => {
    expect(defaultLayers(4)).toEqual([1, 2, 3]);
    expect(defaultLayers(16)).toEqual([4, 8, 12]);
    expect(summary.layers).toEqual(LAYERS);
    expect(summary.questions).toEqual({ train: 2, val: 1, test: 1 });
    for (const t of TASKS) {
      const counts = summary.examples[t.name];
      expect(counts, t.name).toBeDefined();
      if (t.groundTruth) {
        // GSM8K has no program: the ground-truth tasks say why they made nothing (test/study.test.ts has them on the organism).
        expect(counts).toEqual({ train: 0, val: 0, test: 0 });
        expect(Object.keys(summary.skipped[t.name])).toEqual([expect.stringMatching(/^no program \(give make-tasks --data with the "program" field/)]);
        continue;
      }
      expect(counts.val + counts.test, `${t.name} has held-out examples`).toBeGreaterThan(0);
      for (const s of SPLITS) expect(bySplit[s].filter((e) => e.task === t.name).length).toBe(counts[s]);
    }
    expect(summary.totals.train).toBe(bySplit.train.length);
  });

  it('references vectors in the capture shards (not copied), with the record, layer and positions in source', async () => {
    for (const e of all) {
      expect(Array.isArray(e.vectors)).toBe(false);
      const s = src(e);
      expect(records.has(s.record)).toBe(true);
      expect(s.layer).toBe(e.layer);
      expect(s.point).toBe(`resid_post.${e.layer}`);
      expect(e.question.length).toBeGreaterThan(0);
      expect(e.answer).toMatch(/^ \S/);
    }
    // A sample per task: the stored rows are the capture's rows at the named positions.
    for (const t of TASKS) {
      const e = of(t.name).find((x) => src(x).variant_record === undefined);
      if (!e) continue;
      const s = src(e);
      const tensor = records.get(s.record)!.tensors[`resid_post.${e.layer}`];
      const data = await readCaptureTensorF32(capDir, tensor);
      const got = await vectorsOf(e);
      const d = model.info.nEmbd;
      s.positions.forEach((p, i) => {
        const row = tensor.positions ? tensor.positions.indexOf(p) : p;
        expect(rowsEqual(got.subarray(i * d, (i + 1) * d), data.subarray(row * d, (row + 1) * d)), `${e.id} position ${p}`).toBe(true);
      });
    }
  });

  it('splits by question: no question, and no question\'s vectors, in two splits', () => {
    const owner = new Map<string, Split>();
    for (const s of SPLITS) {
      for (const e of bySplit[s]) {
        expect(e.split).toBe(s);
        const q = src(e).record;
        if (owner.has(q)) expect(owner.get(q), `question ${q}`).toBe(s);
        owner.set(q, s);
        // Tensor keys are "<record>/<point>" in the capture and "<record>~<variant>/<point>" in the extras.
        const ref = e.vectors as { key: string };
        expect(ref.key.startsWith(`${q}/`) || ref.key.startsWith(`${q}~`), ref.key).toBe(true);
      }
    }
    for (const s of SPLITS) for (const q of summary.questionIds[s]) expect(owner.get(q) ?? s).toBe(s);
    const sets = SPLITS.map((s) => new Set(bySplit[s].map((e) => src(e).record)));
    for (let i = 0; i < 3; i++) for (let j = i + 1; j < 3; j++) expect([...sets[i]].filter((q) => sets[j].has(q))).toEqual([]);
  });

  it('assigns splits by a seeded hash of the question id, with every split non-empty when there are enough questions', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `q${i}`);
    const a = assignSplits(ids, [0.8, 0.1, 0.1], 0);
    const counts = { train: 0, val: 0, test: 0 };
    for (const s of a.values()) counts[s]++;
    expect(counts).toEqual({ train: 800, val: 100, test: 100 });
    expect(assignSplits([...ids].reverse(), [0.8, 0.1, 0.1], 0)).toEqual(a);
    expect([...assignSplits(ids, [0.8, 0.1, 0.1], 1)].filter(([id, s]) => a.get(id) !== s).length).toBeGreaterThan(100);
    const three = assignSplits(['a', 'b', 'c'], [0.8, 0.1, 0.1], 0);
    expect(new Set(three.values())).toEqual(new Set(['train', 'val', 'test']));
  });

  it('keeps the eval-only tasks out of train.jsonl and marks the head-view task', () => {
    const probeTrain = readJsonl(summary.probeTrain);
    for (const t of TASKS.filter((x) => x.evalOnly && !x.groundTruth)) {
      expect(bySplit.train.some((e) => e.task === t.name)).toBe(false);
      expect(summary.withheldFromTrain[t.name]).toBeGreaterThan(0);
      // Withheld from training, kept for the probe baseline only.
      expect(probeTrain.filter((e) => e.task === t.name).length).toBe(summary.withheldFromTrain[t.name]);
      for (const e of of(t.name)) expect((e as { eval_only?: boolean }).eval_only).toBe(true);
    }
    for (const e of of('logit_lens')) expect((e as { leaks_head?: boolean }).leaks_head).toBe(true);
  });
});

describe('labels against their sources', () => {
  it('ablation: changed and to-what, per kind and step, from the trace ablations', () => {
    const ex = of('ablation');
    for (const [id, t] of traces) {
      const n = t.steps.length - 1;
      expect(ex.filter((e) => src(e).record === id).length).toBe(3 * n * 2 * LAYERS.length);
    }
    for (const e of ex) {
      const s = src(e);
      const t = traces.get(s.record)!;
      const a = t.ablations[s.kind as 'zero']!.find((x) => x.step === s.step)!;
      expect(s.steps).toEqual(Array.from({ length: t.steps.length - 1 }, (_, i) => i));
      if (e.id.endsWith('.changed')) expect(e.answer).toBe(yn(!sameAnswer(a.answer, t.answer)));
      else expect(e.answer).toBe(say(answerKey(a.answer)));
    }
  });

  it('early_decode: the answer after m steps from the vectors of steps 0..m-1; readout = trace lens at the last layer', () => {
    const ex = of('early_decode');
    expect(ex.length).toBeGreaterThan(0);
    for (const e of ex) {
      const s = src(e);
      const t = traces.get(s.record)!;
      const m = s.latents as number;
      expect(s.steps).toEqual(Array.from({ length: m }, (_, i) => i));
      expect(e.answer).toBe(say(answerKey(t.early_decodes.find((d) => d.latents === m)!.answer)));
      if (e.layer === 3) expect((e as { readout?: string }).readout).toBe(say(t.steps[m].top_k[0].token));
    }
  });

  it('convergence: the number of steps after which every early answer is the final one', () => {
    for (const e of of('convergence')) {
      const t = traces.get(src(e).record)!;
      const n = t.steps.length - 1;
      let m = 0;
      for (let k = 0; k <= n; k++) {
        const final = t.early_decodes.slice(k).every((d) => answerKey(d.answer) === answerKey(t.answer));
        if (final) {
          m = k;
          break;
        }
      }
      expect(e.answer).toBe(say(m));
    }
  });

  it("prompt: the question's first sentence", () => {
    for (const e of of('prompt')) {
      const t = traces.get(src(e).record)!;
      expect(e.answer).toBe(say(firstSentence(t.question!)));
      expect(t.question!.replace(/\s+/g, ' ').startsWith(e.answer.trim())).toBe(true);
    }
  });

  it('contrastive: with vs without latents, from the trace', () => {
    for (const e of of('contrastive')) {
      const t = traces.get(src(e).record)!;
      if (e.id.endsWith('changed')) expect(e.answer).toBe(yn(answerKey(t.no_reasoning_answer!) !== answerKey(t.answer)));
      else expect(e.answer).toBe(say(`${answerKey(t.no_reasoning_answer!)} -> ${answerKey(t.answer)}`));
    }
  });

  it('past_lens / future_lens: the k tokens before / after the position, from the capture record', () => {
    for (const task of ['past_lens', 'future_lens']) {
      const ex = of(task);
      expect(ex.length).toBeGreaterThan(0);
      for (const e of ex) {
        const s = src(e) as ReturnType<typeof src> & { position: number; k: number; window: [number, number] };
        const r = records.get(s.record)!;
        expect(s.positions).toEqual([s.position]);
        expect(s.window).toEqual(task === 'past_lens' ? [s.position - s.k, s.position] : [s.position + 1, s.position + 1 + s.k]);
        expect(e.answer).toBe(say(model.detokenize(r.tokens.slice(s.window[0], s.window[1]))));
        expect(r.positionKinds![s.position]).toMatch(/^(prompt|answer)$/);
      }
    }
  });

  it("logit_lens: the head's top token on the step vector; at the last layer the trace's own lens", async () => {
    const ex = of('logit_lens');
    expect(ex.length).toBeGreaterThan(0);
    for (const e of ex) {
      const s = src(e);
      const t = traces.get(s.record)!;
      if (e.layer === model.info.nLayer - 1) {
        expect(s.token_id).toBe(t.steps[(s.step as number) + 1].top_k[0].id);
        expect(e.answer).toBe(say(t.steps[(s.step as number) + 1].top_k[0].token));
      }
      expect((e as { readout?: string }).readout).toBe(e.answer);
    }
  });

  it('step_identity: the step of the one vector is where that step was fed', () => {
    for (const e of of('step_identity')) {
      const s = src(e);
      const r = records.get(s.record)!;
      expect(e.answer).toBe(say(s.step as number));
      expect(s.positions).toEqual([latentPositions(r)[s.step as number]]);
      expect(r.positionKinds![s.positions[0]]).toBe('latent');
    }
  });

  it('step_tamper: the swapped / noised reruns, redone here, give the stored vectors and answers', async () => {
    const ex = of('step_tamper');
    const reruns = new Map<string, { answer: string; rows: Map<number, Float32Array> }>();
    for (const e of ex) {
      const s = src(e);
      const t = traces.get(s.record)!;
      const n = t.steps.length - 1;
      if (s.variant === 'clean') {
        expect(e.answer).toBe(' No');
        expect(s.steps).toEqual(Array.from({ length: n }, (_, i) => i));
        continue;
      }
      const steps = s.tampered_steps as number[];
      const key = `${s.record}/${s.variant}`;
      if (!reruns.has(key)) {
        const iv = s.variant === 'swap' ? { kind: 'swap' as const, step: steps[0], with: steps[1] } : { kind: 'noise' as const, step: steps[0], scale: s.noise_scale as number, seed: s.noise_seed as number };
        const r = await reasoner.reason({ tokens: t.prompt_tokens }, { maxAnswerTokens: MAX_ANSWER, interventions: [iv], capture: LAYERS.map((l) => `resid_post.${l}`), capturePositions: ['latent'], lensTopK: 1 });
        reruns.set(key, { answer: r.answer, rows: new Map(LAYERS.map((l) => [l, r.captures[`resid_post.${l}`].data])) });
      }
      const rerun = reruns.get(key)!;
      expect(s.variant_answer).toBe(rerun.answer);
      expect(rowsEqual(await vectorsOf(e), rerun.rows.get(e.layer as number)!), e.id).toBe(true);
      if (e.id.endsWith('.any')) expect(e.answer).toBe(' Yes');
      else if (s.variant === 'noise') expect(e.answer).toBe(say(steps[0]));
      else expect(e.answer).toBe(say(`${steps[0]} and ${steps[1]}`));
    }
    expect(reruns.size).toBeGreaterThan(0);
  });

  it('counterfactual: the question with one number changed, rerun here; answer change and per-step movement vs threshold', async () => {
    const ex = of('counterfactual');
    expect(ex.length).toBeGreaterThan(0);
    const reruns = new Map<string, { answer: string; rows: Record<number, Float32Array> }>();
    const d = model.info.nEmbd;
    for (const e of ex) {
      const s = src(e);
      const t = traces.get(s.record)!;
      const cfq = s.counterfactual_question as string;
      // Exactly one number changed, from what the source says to what it says.
      expect(cfq.replace(String(s.to), String(s.from))).toBe(t.question);
      if (!reruns.has(s.record)) {
        const r = await reasoner.reason(cfq, { maxAnswerTokens: MAX_ANSWER, capture: LAYERS.map((l) => `resid_post.${l}`), capturePositions: ['latent'], lensTopK: 1 });
        reruns.set(s.record, { answer: r.answer, rows: Object.fromEntries(LAYERS.map((l) => [l, r.captures[`resid_post.${l}`].data])) });
      }
      const rr = reruns.get(s.record)!;
      expect(s.counterfactual_answer).toBe(rr.answer);
      if (e.id.endsWith('/answer')) {
        expect(e.answer).toBe(yn(answerKey(rr.answer) !== answerKey(t.answer)));
        continue;
      }
      const step = s.step as number;
      const threshold = s.threshold as number;
      expect(threshold).toBe(summary.cfThreshold![String(e.layer)]);
      expect(e.question).toContain(String(threshold));
      const orig = (await vectorsOf(e)).subarray(step * d, (step + 1) * d);
      const moved = native().vectorStats(rr.rows[e.layer as number].subarray(step * d, (step + 1) * d), orig).cosineToPrev!;
      expect(Math.abs(1 - moved - (s.distance as number))).toBeLessThan(1e-5);
      expect(e.answer).toBe(yn(s.distance as number > threshold));
    }
  });

  it("answer_value: the final answer from each step's vector (the seed's task)", () => {
    for (const e of of('answer_value')) {
      const s = src(e);
      const t = traces.get(s.record)!;
      expect(e.answer).toBe(say(answerKey(t.answer)));
      expect(s.seed_task).toBe(true);
      if (e.layer === 3) expect((e as { readout?: string }).readout).toBe(say(t.steps[(s.step as number) + 1].top_k[0].token));
    }
  });

  it('eq_result / eq_operation / number_in_solution: from the worked solution (eval only)', () => {
    const ops: Record<string, string> = { '+': 'addition', '-': 'subtraction', '*': 'multiplication', '/': 'division' };
    for (const e of [...of('eq_result'), ...of('eq_operation'), ...of('number_in_solution')]) {
      const s = src(e);
      const sol = solutions.get(s.record)!;
      const eqs = [...sol.matchAll(/<<([^=]+)=([^>]+)>>/g)];
      if (e.task === 'number_in_solution') {
        const nums = (sol.match(/\d+(\.\d+)?/g) ?? []).map(Number);
        expect(e.answer).toBe(yn(nums.includes(Number(s.number))));
        continue;
      }
      const [, expr, result] = eqs[(s.equation as number) - 1];
      expect(s.expression).toBe(expr.trim());
      if (e.task === 'eq_result') expect(Number(e.answer)).toBe(Number(result));
      else expect(e.answer).toBe(say(ops[expr.replace(/^-/, '').match(/[-+*/]/)![0]]));
    }
    expect(of('eq_result').length).toBeGreaterThan(0);
  });
});

describe('make-tasks reruns and errors', () => {
  it('gives the same files again, reusing the extra runs', async () => {
    const before = SPLITS.map((s) => readFileSync(files[s], 'utf8'));
    const facts = readFileSync(join(out, 'extra', 'facts.jsonl'), 'utf8');
    await makeTasks({ traces: tracesPath, capture: capDir, out, data: dataPath, split: [0.5, 0.25, 0.25], threads: 2 });
    expect(SPLITS.map((s) => readFileSync(files[s], 'utf8'))).toEqual(before);
    expect(readFileSync(join(out, 'extra', 'facts.jsonl'), 'utf8')).toBe(facts);
  });

  it('caps examples per task and question, and can keep the head-view task out of training', async () => {
    const o2 = join(tmp, 'capped');
    const s = await makeTasks({ traces: tracesPath, capture: capDir, out: o2, tasks: ['ablation', 'logit_lens'], maxPerQuestion: 5, headView: false, split: [0.5, 0.25, 0.25], threads: 2 });
    expect(s.examples.ablation).toEqual({ train: 10, val: 5, test: 5 });
    expect(s.examples.logit_lens.train).toBe(0);
    expect(s.withheldFromTrain.logit_lens).toBeGreaterThan(0);
  });

  it('names the manifest when a layer was not captured, and the files when trace and capture disagree', async () => {
    const err = makeTasks({ traces: tracesPath, capture: capDir, out: join(tmp, 'bad'), layers: [0] });
    await expect(err).rejects.toBeInstanceOf(InputError);
    await expect(err).rejects.toThrow(/manifest\.json: no resid_post\.0 captured \(it has resid_post\.1, resid_post\.2, resid_post\.3\)/);
    const bad = join(tmp, 'bad-traces.jsonl');
    const first = JSON.parse(readFileSync(tracesPath, 'utf8').split('\n')[0]) as TraceLine;
    writeFileSync(bad, JSON.stringify({ ...first, steps: first.steps.slice(0, 3) }) + '\n');
    await expect(makeTasks({ traces: bad, capture: capDir, out: join(tmp, 'bad2') })).rejects.toThrow(/bad-traces\.jsonl has 2 latent steps, .*manifest\.json has 6/);
    writeFileSync(bad, '{"id": "0", "steps": "x"}\n');
    await expect(makeTasks({ traces: bad, capture: capDir, out: join(tmp, 'bad3') })).rejects.toThrow(/bad-traces\.jsonl:1: field '/);
  });
});
