// Activation-oracle training, asking and evaluation through the TS layer on the tiny golden model:
// the golden oracle-lora steps, loss going down, bit-identical resume, the saved adapter at
// inference (same loss as the trainer), the PEFT export, capture folders as vector sources, the
// eval report, and errors for bad data.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { askOracle } from '../lib/oracle/ask-oracle.js';
import { writeCaptureManifest, type CaptureManifest } from '../lib/capture/capture-manifest.js';
import { convertAdapter } from '../lib/engine/convert.js';
import { evalOracle } from '../lib/oracle/eval-oracle.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { native } from '../lib/core/native.js';
import { buildOracleInput, type OracleExample } from '../lib/oracle/oracle-data.js';
import { readSafetensors, writeSafetensors } from '../lib/core/safetensors.js';
import { planRun, trainOracle, type TrainOracleOptions, type TrainOracleProgress } from '../lib/oracle/train-oracle.js';
import { runCli } from './helpers/cli.js';
import { readGgufTable } from './helpers/gguf.js';
import { golden } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-oracle-'));
const base = golden('gguf', 'tiny-l3.f32.gguf');
const reasoning = golden('hf', 'codi-tiny.reasoning.safetensors');
const KEY = 'q0.resid_post.2';
let model: Model;

// Synthetic tasks on the CODI-tiny latent states of question 0 (bot at 99, latent steps at 100..105):
// which step a state is from (numeric answers), and whether it is a latent position.
function example(id: string, task: string, rows: number[], question: string, answer: string) {
  return { id, task, layer: 2, question, answer, vectors: { file: reasoning, key: KEY, rows } };
}
const trainExamples = [
  example('s1', 'step', [100], 'Which latent step is this?', ' 1'),
  example('s2', 'step', [101], 'Which latent step is this?', ' 2'),
  example('s3', 'step', [102], 'Which latent step is this?', ' 3'),
  example('s4', 'step', [103, 104], 'Which latent steps are these?', ' 4 and 5'),
  example('y1', 'latent', [104], 'Is this a latent thought?', ' yes'),
  example('y2', 'latent', [105], 'Is this a latent thought?', ' yes'),
  example('n1', 'latent', [10, 11], 'Are these latent thoughts?', ' no'),
  example('n2', 'latent', [20], 'Is this a latent thought?', ' no'),
];
const jsonl = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).join('\n') + '\n';
const trainFile = join(tmp, 'train.jsonl');
const valFile = join(tmp, 'val.jsonl');

const trainOpts = (out: string, extra: Partial<TrainOracleOptions> = {}): TrainOracleOptions => ({
  base,
  data: trainFile,
  val: valFile,
  out,
  loraR: 8,
  loraAlpha: 16,
  lr: 2e-3,
  batchSize: 4,
  epochs: 4,
  warmup: 0,
  schedule: 'linear',
  seed: 1,
  saveEvery: 2,
  evalEvery: 4,
  threads: 2,
  ...extra,
});

interface LogLine {
  step: number;
  loss?: number;
  val_loss?: number;
}
const readLog = (p: string): LogLine[] =>
  readFileSync(p, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LogLine);

let runA: Awaited<ReturnType<typeof trainOracle>>;

beforeAll(async () => {
  model = await loadModel(base);
  writeFileSync(trainFile, jsonl(trainExamples));
  writeFileSync(valFile, jsonl(trainExamples.slice(0, 4)));
  runA = await trainOracle(trainOpts(join(tmp, 'a')));
});
afterAll(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('train-oracle', () => {
  it('reproduces the golden oracle-lora losses through the TS path', async () => {
    interface G {
      K: number;
      text: string;
      answer: string;
    }
    const gold = JSON.parse(readFileSync(golden('hf', 'oracle-lora.json'), 'utf8')) as { examples: G[]; hf_labels_loss_before_each_step: number[] };
    const file = join(tmp, 'golden.jsonl');
    writeFileSync(
      file,
      jsonl(
        gold.examples.map((g, b) => ({
          id: `g${b}`,
          task: 'golden',
          layer: 2,
          question: g.text.split('\n').slice(2).join('\n'),
          answer: g.answer,
          vectors: { file: golden('hf', 'oracle-lora.safetensors'), key: `vectors.${b}`, rows: Array.from({ length: g.K }, (_, i) => i) },
        })),
      ),
    );
    const out = join(tmp, 'golden');
    await trainOracle({
      base,
      data: file,
      out,
      initAdapter: golden('hf', 'oracle-lora-adapter'),
      injectLayer: 1,
      loraR: 8,
      loraAlpha: 16,
      lr: 1e-3,
      weightDecay: 0.01,
      batchSize: 3,
      clip: 0,
      warmup: 0,
      steps: 3,
      shuffle: false,
      threads: 2,
      format: ['gguf'],
    });
    const log = readLog(join(out, 'log.jsonl'));
    expect(log[0].loss).toBeCloseTo(27.552694, 4);
    log.forEach((l, i) => expect(l.loss! / gold.hf_labels_loss_before_each_step[i]).toBeCloseTo(1, 5));
  });

  it('plans seeded, length-grouped epochs that cover every example once', () => {
    const lengths = Array.from({ length: 37 }, (_, i) => 10 + ((i * 7) % 23));
    const o = { batchSize: 2, gradAccum: 2, seed: 3, shuffle: true, groupByLength: true, epochs: 2 };
    const plan = planRun(lengths, o);
    expect(plan.length).toBe(2 * Math.ceil(37 / 4));
    for (const e of [0, 1]) {
      const seen = plan.filter((s) => s.epoch === e).flatMap((s) => s.micro.flat());
      expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 37 }, (_, i) => i));
    }
    expect(planRun(lengths, o)).toEqual(plan);
    expect(planRun(lengths, { ...o, seed: 4 })).not.toEqual(plan);
    expect(plan[0].micro.length).toBe(2);
    expect(planRun(lengths, { ...o, steps: 25 }).length).toBe(25);
  });

  it('lowers the loss and writes the log, checkpoint and both adapter formats', () => {
    const log = readLog(runA.log);
    const steps = log.filter((l) => l.loss !== undefined);
    expect(steps.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(steps[7].loss!).toBeLessThan(steps[0].loss! * 0.7);
    const vals = log.filter((l) => l.val_loss !== undefined);
    expect(vals.map((l) => l.step)).toEqual([0, 4, 8]);
    expect(vals[2].val_loss!).toBeLessThan(vals[1].val_loss!);
    expect(vals[1].val_loss!).toBeLessThan(vals[0].val_loss!);
    expect(runA).toMatchObject({ steps: 8, totalSteps: 8, epochs: 4, rank: 8, alpha: 16, trainExamples: 8, valExamples: 4 });
    expect(runA.adapter.gguf).toBe(join(tmp, 'a', 'adapter.gguf'));
    expect(JSON.parse(readFileSync(join(tmp, 'a', 'peft', 'oracle.json'), 'utf8'))).toMatchObject({ injectLayer: 1, injectCoef: 1, steps: 8 });
  });

  it('resumes after a stop to a bit-identical adapter', async () => {
    const out = join(tmp, 'b');
    const ac = new AbortController();
    const onProgress = (p: TrainOracleProgress) => {
      if (p.phase === 'train' && p.step === 3) ac.abort();
    };
    await expect(trainOracle(trainOpts(out), { onProgress, signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError', step: 3 });
    await expect(trainOracle(trainOpts(out))).rejects.toThrow(/already holds a training run/);
    await expect(trainOracle(trainOpts(out, { lr: 1e-3, resume: true }))).rejects.toThrow(/lr: the run has 0.002, now 0.001/);
    const resumed = await trainOracle(trainOpts(out, { resume: true }));
    expect(resumed.resumedFrom).toBe(3);
    expect(readFileSync(join(out, 'adapter.gguf')).equals(readFileSync(join(tmp, 'a', 'adapter.gguf')))).toBe(true);
    const strip = (l: LogLine) => ({ step: l.step, loss: l.loss, val_loss: l.val_loss });
    expect(readLog(resumed.log).map(strip)).toEqual(readLog(runA.log).map(strip));
  });

  it('names the file, line and field of bad data', async () => {
    const bad = join(tmp, 'bad.jsonl');
    let k = 0;
    const opts = (x: object) => trainOpts(join(tmp, `bad-${k++}`), { val: undefined, data: bad, ...x });
    writeFileSync(bad, jsonl([trainExamples[0], { id: 'x', task: 't', layer: 2, question: 'q' }]));
    await expect(trainOracle(opts({}))).rejects.toThrow(/bad\.jsonl:2: field 'answer': Required/);
    writeFileSync(bad, jsonl([{ ...trainExamples[0], vectors: [[1, 2, 3]] }]));
    await expect(trainOracle(opts({}))).rejects.toThrow(/bad\.jsonl:1: example s1: vector 0 has 3 values, the model width is 256/);
    writeFileSync(bad, jsonl([{ ...trainExamples[0], vectors: { file: reasoning, key: KEY, rows: [500] } }]));
    await expect(trainOracle(opts({}))).rejects.toThrow(/bad\.jsonl:1: example s1: row 500 is outside q0\.resid_post\.2 \(119 rows\)/);
    writeFileSync(bad, jsonl([{ ...trainExamples[0], vectors: { file: 'nope.safetensors', key: KEY, rows: [0] } }]));
    await expect(trainOracle(opts({}))).rejects.toThrow(/bad\.jsonl:1: example s1: vectors file not found/);
    writeFileSync(bad, jsonl([trainExamples[0], trainExamples[0]]));
    await expect(trainOracle(opts({}))).rejects.toThrow(/bad\.jsonl:2: field 'id': "s1" is already used on line 1/);
    writeFileSync(bad, '{"id": \n');
    await expect(trainOracle(opts({}))).rejects.toThrow(/bad\.jsonl:1: not valid JSON/);
  });
});

describe('the trained adapter at inference', () => {
  it('gives the trainer’s validation loss in an inference session (inject edits at resid_post.1)', async () => {
    const session = model.createSession({ nCtx: 128, threads: 2 });
    session.setAdapters([{ adapter: native().loadAdapter(model.nativeHandle, runA.adapter.gguf!) }]);
    const { tensors } = await readSafetensors(reasoning);
    const all = new Float32Array(tensors.get(KEY)!.data.buffer.slice(0));
    let sum = 0;
    let n = 0;
    for (const [s, ex] of trainExamples.slice(0, 4).entries()) {
      const input = buildOracleInput(model, ex as OracleExample);
      const rows = ex.vectors.rows;
      const r = await session.eval({
        tokens: input.ids,
        seqIds: input.ids.map(() => s),
        outputRows: 'all',
        edits: input.positions.map((p, k) => ({ point: 'resid_post.1', row: p, mode: 'inject' as const, vector: all.subarray(rows[k] * 256, rows[k] * 256 + 256) })),
      });
      const V = model.info.nVocab;
      for (let t = 0; t + 1 < input.ids.length; t++) {
        if (!input.lossMask[t + 1]) continue;
        sum += native().logitStats(r.logits!, t, V, V, 1).logsumexp - r.logits![t * V + input.ids[t + 1]];
        n++;
      }
    }
    session.dispose();
    const finalVal = readLog(runA.log).filter((l) => l.val_loss !== undefined).pop()!.val_loss!;
    expect(sum / n).toBeCloseTo(finalVal, 4);
  });

  it('exports a PEFT folder that converts back to the same GGUF tensors', async () => {
    const back = join(tmp, 'roundtrip.gguf');
    await convertAdapter(runA.adapter.peft!, back, { baseConfig: base });
    const a = readGgufTable(runA.adapter.gguf!);
    const b = readGgufTable(back);
    expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
    for (const [name, t] of a.tensors) {
      const u = b.tensors.get(name)!;
      expect(u.ne).toEqual(t.ne);
      const size = t.ne.reduce((x, y) => x * y, 1) * 4;
      expect(b.bytes.subarray(u.start, u.start + size).equals(a.bytes.subarray(t.start, t.start + size))).toBe(true);
    }
  });

  it('answers from a safetensors file, a capture folder and the PEFT folder alike', async () => {
    const q = 'Which latent step is this?';
    const fromFile = await askOracle(base, runA.adapter.gguf!, { file: reasoning, key: KEY, rows: [102] }, q, { maxTokens: 6, threads: 2 });
    expect(fromFile).toMatchObject({ layer: 2, vectors: 1, injectLayer: 1 });
    expect(fromFile.promptTokens.length).toBeGreaterThan(5);
    const fromPeft = await askOracle(base, runA.adapter.peft!, { file: reasoning, key: KEY, rows: [102] }, q, { maxTokens: 6, threads: 2 });
    expect(fromPeft.tokens).toEqual(fromFile.tokens);

    // A reasoning capture of CODI-tiny question 0 as the capture code writes it: bot at 99, six latent
    // steps, eot, answer; resid_post.2 kept at the bot and latent positions only.
    const dir = join(tmp, 'capture');
    mkdirSync(dir, { recursive: true });
    const { tensors } = await readSafetensors(reasoning);
    const full = new Float32Array(tensors.get(KEY)!.data.buffer.slice(0));
    const kept = full.slice(99 * 256, 106 * 256);
    const bytes = await writeSafetensors(join(dir, 'shard-00000.safetensors'), [{ name: 'r0.resid_post.2', dtype: 'F32', shape: [7, 256], data: new Uint8Array(kept.buffer) }]);
    const seq = Array.from(new BigInt64Array(tensors.get('q0.seq_ids')!.data.buffer.slice(0)), Number);
    const kinds = [...Array(99).fill('prompt'), 'bot', ...Array(6).fill('latent'), 'eot', ...Array(12).fill('answer')];
    const manifest: CaptureManifest = {
      format: 'lro-capture',
      version: 2,
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      complete: true,
      model: { path: base, name: 'tiny', architecture: 'llama', fileSize: 1, nVocab: model.info.nVocab, nEmbd: 256, nLayer: model.info.nLayer },
      settings: {
        points: ['resid_post.2'],
        dtype: 'f32',
        addBos: true,
        parseSpecial: false,
        batchSize: 512,
        kvType: 'f32',
        positions: ['bot', 'latent'],
        reasoning: { latentHead: 'x', mode: 'codi', latentSteps: 6, format: 'codi', maxAnswerTokens: 12, temperature: 0, seed: 0 },
      },
      shards: [{ file: 'shard-00000.safetensors', bytes, tensors: 1 }],
      records: [
        {
          id: 'q0',
          tokens: seq.map((t, i) => (kinds[i] === 'latent' ? -1 : t)),
          positionKinds: kinds,
          latentSteps: 6,
          tensors: {
            'resid_post.2': { file: 'shard-00000.safetensors', key: 'r0.resid_post.2', shape: [7, 256], dtype: 'F32', positions: [99, 100, 101, 102, 103, 104, 105] },
          },
        },
      ],
    };
    await writeCaptureManifest(dir, manifest);
    // Latent step 3 is position 99 + 3 = 102, the row asked about above.
    const fromCapture = await askOracle(base, runA.adapter.gguf!, { capture: dir, record: 'q0', layer: 2, steps: [3] }, q, { maxTokens: 6, threads: 2 });
    expect(fromCapture.tokens).toEqual(fromFile.tokens);
    await expect(askOracle(base, runA.adapter.gguf!, { capture: dir, record: 'q0', layer: 2, steps: [7] }, q)).rejects.toThrow(/latent steps 0\.\.6; asked for step 7/);
    await expect(askOracle(base, runA.adapter.gguf!, { capture: dir, record: 'q0', layer: 2, positions: [5] }, q)).rejects.toThrow(/captured without position 5/);
    await expect(askOracle(base, runA.adapter.gguf!, { capture: dir, record: 'qq', layer: 2, steps: [1] }, q)).rejects.toThrow(/no record "qq"/);
    await expect(askOracle(base, runA.adapter.gguf!, { capture: dir, record: 'q0', layer: 1, steps: [1] }, q)).rejects.toThrow(/has no resid_post\.1/);
  });
});

describe('eval-oracle', () => {
  it('reports per-task accuracy with both baselines and bootstrap intervals, and resumes its predictions', async () => {
    const preds = join(tmp, 'preds.jsonl');
    const ac = new AbortController();
    const stopped = evalOracle(base, runA.adapter.gguf!, trainFile, {
      maxTokens: 6,
      batchSize: 4,
      bootstrap: 200,
      threads: 2,
      predictions: preds,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.done === 4) ac.abort();
      },
    });
    await expect(stopped).rejects.toMatchObject({ name: 'AbortError' });
    expect(readFileSync(preds, 'utf8').trim().split('\n').length).toBe(5);
    const report = await evalOracle(base, runA.adapter.gguf!, trainFile, { maxTokens: 6, batchSize: 4, bootstrap: 200, threads: 2, predictions: preds, resume: true });
    const fresh = await evalOracle(base, runA.adapter.gguf!, trainFile, { maxTokens: 6, batchSize: 8, bootstrap: 200, threads: 2 });
    expect(report.predictions).toEqual(fresh.predictions);
    expect(Object.keys(report.tasks).sort()).toEqual(['latent', 'step']);
    expect(report.examples).toBe(8);
    for (const g of [...Object.values(report.tasks), report.overall])
      for (const c of [g.oracle, g.noVectors, g.shuffled]) {
        expect(c.exact.n).toBeGreaterThan(0);
        if (c.exact.ci95) expect(c.exact.ci95[0]).toBeLessThanOrEqual(c.exact.accuracy!);
      }
    expect(report.tasks.step.nNumeric).toBe(4);
    expect(report.tasks.latent.nNumeric).toBe(0);
    for (const p of report.predictions!) expect(p.shuffledFrom).not.toBe(p.id);
    // Each condition is the oracle asked with the right vectors: its own, its partner's, none.
    const p = report.predictions!.find((x) => x.id === 's4')!;
    const ask = (rows: number[]) =>
      askOracle(base, runA.adapter.gguf!, { file: reasoning, key: KEY, rows }, 'Which latent steps are these?', { maxTokens: 6, threads: 2 });
    expect((await ask([103, 104])).text).toBe(p.oracle);
    expect((await ask(trainExamples.find((x) => x.id === p.shuffledFrom)!.vectors.rows)).text).toBe(p.shuffled);
    expect(p.noVectors).not.toBe(p.oracle);
  });
});

describe('oracle CLI', () => {
  it('trains, asks and evaluates, and prints one line for bad data', async () => {
    const out = join(tmp, 'cli');
    const common = ['--base', base, '--threads', '2'];
    const tr = await runCli(['train-oracle', ...common, '--data', trainFile, '--out', out, '--lora-r', '8', '--lora-alpha', '16', '--lr', '2e-3', '--batch-size', '4', '--warmup', '0', '--format', 'gguf', '--json', '-q']);
    expect(tr.stderr).toBe('');
    expect(tr.code).toBe(0);
    expect(JSON.parse(tr.stdout)).toMatchObject({ steps: 2, rank: 8 });
    const ask = await runCli(['ask', ...common, '--adapter', join(out, 'adapter.gguf'), '--vectors', reasoning, '--key', KEY, '--rows', '100', '--max-tokens', '4', 'Which', 'latent', 'step', 'is', 'this?']);
    expect(ask.code).toBe(0);
    expect(ask.stdout.split('\n').length).toBe(2);
    const ev = await runCli(['eval-oracle', ...common, '--adapter', join(out, 'adapter.gguf'), '--data', trainFile, '--max-tokens', '4', '--bootstrap', '50', '--json', '-q']);
    expect(ev.code).toBe(0);
    expect(Object.keys(JSON.parse(ev.stdout).tasks)).toEqual(['latent', 'step']);
    const table = await runCli(['eval-oracle', ...common, '--adapter', join(out, 'adapter.gguf'), '--data', trainFile, '--max-tokens', '4', '--bootstrap', '50', '-q']);
    expect(table.stdout).toMatch(/task +n +metric +oracle +no vectors +shuffled/);
    const bad = join(tmp, 'bad-cli.jsonl');
    writeFileSync(bad, jsonl([trainExamples[0]]) + '{"id": "b", "task": "t", "layer": 2, "question": "q", "vectors": [[1]]}\n');
    const r = await runCli(['train-oracle', ...common, '--data', bad, '--out', join(tmp, 'cli-bad'), '-q']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lro-native: .*bad-cli\.jsonl:2: field 'answer': Required\n$/);
    const noLayer = await runCli(['ask', ...common, '--adapter', join(out, 'adapter.gguf'), '--vectors', reasoning, '--key', 'q0.h', '--rows', '1', 'q']);
    expect(noLayer.stderr).toMatch(/^lro-native: ask: give the layer the vectors were read at \(--layer\)/);
  });
});
