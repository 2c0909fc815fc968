// train-latent against the codi-train goldens, end to end from GSM8K lines: the ids and labels the
// TS layer builds, the step-0 loss and gradients the CLI dumps (--dump-grads), and a resume that
// ends with the same files as an uninterrupted run.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertHf } from '../lib/engine/convert.js';
import { latentIds, problemFromLine, stepOperand, stepResult } from '../lib/training/latent-data.js';
import { LatentHead } from '../lib/reasoning/latent-head.js';
import { trainLatent } from '../lib/training/latent-train.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { readSafetensors } from '../lib/core/safetensors.js';
import { runCli, startCli } from './helpers/cli.js';
import { sharedDir } from './helpers/paths.js';

const hf = join(sharedDir, 'golden', 'hf');
const tmp = mkdtempSync(join(tmpdir(), 'lro-latent-train-'));
const gsmRows = readFileSync(join(sharedDir, 'data', 'gsm8k', 'train.jsonl'), 'utf8').split('\n').filter(Boolean);

interface GoldenExample {
  source_row: number;
  encoder_ids: number[];
  decoder_ids: number[];
  decoder_labels: number[];
  teacher_ids: number[];
  teacher_labels: number[];
  distill_decoder_index: number;
  teacher_positions: { distill: number };
  prompt_ids: number[];
  suffix_ids: number[];
  suffix_labels: number[];
}
const golden = (name: string) => JSON.parse(readFileSync(join(hf, `${name}.json`), 'utf8')) as { examples: GoldenExample[]; losses: number[] };

function relL2(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / (den || 1));
}

const f32 = (t: { data: Uint8Array }) => new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));

let model: Model;
let head: LatentHead | null;
const dataFile = join(tmp, 'three.jsonl');

beforeAll(async () => {
  await convertHf(join(hf, 'codi-tiny'), join(tmp, 'base.gguf'), { noMerge: true });
  model = await loadModel(join(tmp, 'base.gguf'));
  head = LatentHead.find(model);
  writeFileSync(dataFile, golden('codi-train').examples.map((e) => gsmRows[e.source_row]).join('\n') + '\n');
}, 60_000);
afterAll(() => model?.dispose());

describe('latent training ids', () => {
  it('CODI student, teacher and distillation positions equal the golden for GSM8K lines', () => {
    for (const e of golden('codi-train').examples) {
      const ids = latentIds(model, head!.settings, problemFromLine(JSON.parse(gsmRows[e.source_row])), { objective: 'codi' });
      expect(Array.from(ids.prompt!)).toEqual(e.encoder_ids);
      expect(Array.from(ids.suffix!)).toEqual(e.decoder_ids);
      expect(Array.from(ids.suffixLabels!)).toEqual(e.decoder_labels);
      expect(Array.from(ids.teacher!)).toEqual(e.teacher_ids);
      expect(Array.from(ids.teacherLabels!)).toEqual(e.teacher_labels);
      expect(ids.studentDistill).toBe(e.distill_decoder_index);
      expect(ids.teacherDistill).toBe(e.teacher_positions.distill);
    }
  });

  it('Coconut stage 2 prompt, suffix and labels equal the golden', () => {
    for (const e of golden('codi-train-coconut').examples) {
      const ids = latentIds(model, head!.settings, problemFromLine(JSON.parse(gsmRows[e.source_row])), { objective: 'coconut', stage: 2 });
      expect(Array.from(ids.prompt!)).toEqual(e.prompt_ids);
      expect(Array.from(ids.suffix!)).toEqual(e.suffix_ids);
      expect(Array.from(ids.suffixLabels!)).toEqual(e.suffix_labels);
    }
  });

  it('Coconut latent targets: step k predicts the first token of its result, the answer past the last step', () => {
    expect(stepResult('<<25*3=75>>')).toBe('75');
    expect(stepResult('<<48/2=24>>')).toBe('24');
    expect(stepResult('<<a=b=c>>')).toBe('c');
    expect(stepResult('no result')).toBeNull();
    const p = { question: 'Mia has 3 shells. She finds 4 more. She doubles them. How many?', steps: ['<<3+4=7>>', '<<7*2=14>>'], answer: '14' };
    const tok = (s: string) => model.tokenize(s, { addBos: false });
    const ids = latentIds(model, head!.settings, p, { objective: 'coconut', stage: 3, latentTargets: true });
    expect(Array.from(ids.latentLabels!)).toEqual([tok('7')[0], tok('14')[0], tok('14')[0]]);
    // Two latents per step: the second of each predicts the result.
    const two = latentIds(model, head!.settings, p, { objective: 'coconut', stage: 2, latentsPerStep: 2, latentTargets: true });
    expect(Array.from(two.latentLabels!)).toEqual([-100, tok('7')[0], -100, tok('14')[0]]);
    // Without the option (the golden's Coconut) there are none.
    expect(latentIds(model, head!.settings, p, { objective: 'coconut', stage: 3 }).latentLabels).toBeUndefined();
    expect(() => latentIds(model, head!.settings, { ...p, steps: ['think'] }, { objective: 'coconut', stage: 1, latentTargets: true })).toThrow(/CoT step 1.*no '= result'/);
  });

  it("operand targets: the latent before each step's last predicts its last operand", () => {
    expect(stepOperand('<<25*3=75>>')).toBe('3');
    expect(stepOperand('<<5+3+2=10>>')).toBe('2');
    expect(stepOperand('<<x=4>>')).toBeNull();
    const p = { question: 'Mia has 3 shells. She finds 4 more. She doubles them. How many?', steps: ['<<3+4=7>>', '<<7*2=14>>'], answer: '14' };
    const tok = (s: string) => model.tokenize(s, { addBos: false })[0];
    const two = latentIds(model, head!.settings, p, { objective: 'coconut', stage: 3, latentsPerStep: 2, latentTargets: true, operandTargets: true });
    // Past the last step both latents predict the answer.
    expect(Array.from(two.latentLabels!)).toEqual([tok('4'), tok('7'), tok('2'), tok('14'), tok('14'), tok('14')]);
    const three = latentIds(model, head!.settings, p, { objective: 'coconut', stage: 1, latentsPerStep: 3, latentTargets: true, operandTargets: true });
    expect(Array.from(three.latentLabels!)).toEqual([-100, tok('4'), tok('7')]);
    // One latent per step has no room for the operand: the result alone, as without the option.
    const one = latentIds(model, head!.settings, p, { objective: 'coconut', stage: 2, latentTargets: true, operandTargets: true });
    expect(Array.from(one.latentLabels!)).toEqual([tok('7'), tok('14')]);
    expect(() => latentIds(model, head!.settings, { ...p, steps: ['<<x=4>>'] }, { objective: 'coconut', stage: 1, latentsPerStep: 2, latentTargets: true, operandTargets: true })).toThrow(/CoT step 1.*no operand/);
  });

  it('names the field of a malformed line', () => {
    expect(() => problemFromLine({ question: 'q' })).toThrow(/field 'answer'/);
    expect(() => problemFromLine({ question: 'q', answer: 'no final' })).toThrow(/####/);
    expect(() => problemFromLine({ answer: '#### 3' })).toThrow(/field 'question'/);
    expect(problemFromLine({ question: 'q', cot: ['<<1+2=3>>'], answer: 3 })).toEqual({ question: 'q', steps: ['<<1+2=3>>'], answer: '3' });
  });
});

describe('train-latent', () => {
  it('CLI, CODI LoRA mode: step-0 loss and dumped gradients match codi-train', async () => {
    const out = join(tmp, 'codi-lora');
    const r = await runCli([
      'train-latent', '--base', join(tmp, 'base.gguf'), '--init-adapter', join(tmp, 'base.lora.gguf'), '--data', dataFile,
      '--objective', 'codi', '--mode', 'lora', '--latent-steps', '6', '--lr', '1e-3', '--weight-decay', '0.01', '--clip', '1',
      '--batch-size', '3', '--steps', '1', '--no-shuffle', '--dump-grads', join(out, 'grads'), '--out', out, '-q', '--threads', '2',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const log = JSON.parse(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n')[0]) as { loss: number; grad_norm: number };
    expect(Math.abs(log.loss - golden('codi-train').losses[0]) / log.loss).toBeLessThan(1e-5);
    const mine = await readSafetensors(join(out, 'grads', 'step0.safetensors'));
    const ref = await readSafetensors(join(hf, 'codi-train.safetensors'));
    expect(mine.tensors.size).toBe(62);
    let worst = 0;
    for (const [name, t] of mine.tensors) {
      const g = ref.tensors.get(`grad.step0.${name}`);
      expect(g, name).toBeDefined();
      expect(t.shape).toEqual(g!.shape);
      worst = Math.max(worst, relL2(f32(t), f32(g!)));
    }
    expect(worst).toBeLessThan(5e-4);
  }, 120_000);

  it('refuses another run in the same folder, and a resume with other data', async () => {
    const out = join(tmp, 'codi-lora');
    const again = await runCli(['train-latent', '--base', join(tmp, 'base.gguf'), '--data', dataFile, '--out', out, '-q']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds a training run/);
    const other = join(tmp, 'other.jsonl');
    writeFileSync(other, gsmRows.slice(0, 3).join('\n') + '\n');
    const resumed = await runCli([
      'train-latent', '--base', join(tmp, 'base.gguf'), '--init-adapter', join(tmp, 'base.lora.gguf'), '--data', other,
      '--objective', 'codi', '--latent-steps', '6', '--lr', '1e-3', '--batch-size', '3', '--steps', '1', '--no-shuffle', '--out', out, '--resume', '-q',
    ]);
    expect(resumed.code).toBe(1);
    expect(resumed.stderr).toMatch(/different run \(data\.sha256/);
  }, 120_000);

  it('an interrupted full-mode run (aborted, or killed with SIGKILL) resumed gives the same model and head as an uninterrupted one', async () => {
    const data = join(tmp, 'six.jsonl');
    writeFileSync(data, gsmRows.slice(10, 16).join('\n') + '\n');
    const base = {
      base: join(tmp, 'base.gguf'),
      data,
      objective: 'coconut' as const,
      stage: 1,
      mode: 'full' as const,
      lr: 1e-3,
      batchSize: 2,
      steps: 4,
      seed: 3,
      threads: 2,
      saveEvery: 0,
    };
    const straight = await trainLatent({ ...base, out: join(tmp, 'straight') });
    const ac = new AbortController();
    await expect(
      trainLatent({ ...base, out: join(tmp, 'cut') }, { signal: ac.signal, onProgress: (p) => p.phase === 'train' && p.step === 2 && ac.abort() }),
    ).rejects.toThrow(/stopped after step 2/);
    const resumed = await trainLatent({ ...base, out: join(tmp, 'cut'), resume: true });
    expect(resumed.resumedFrom).toBe(2);
    expect(readFileSync(resumed.model!).equals(readFileSync(straight.model!))).toBe(true);
    expect(readFileSync(resumed.head!).equals(readFileSync(straight.head!))).toBe(true);
    // The trained model loads and runs as any GGUF.
    const m = await loadModel(straight.model!);
    expect(m.info.nLayer).toBe(model.info.nLayer);
    m.dispose();

    // kill -9 in the middle (the CLI, a checkpoint every step), then --resume: the same files.
    const out = join(tmp, 'killed');
    const args = ['train-latent', '--base', base.base, '--data', data, '--objective', 'coconut', '--stage', '1', '--mode', 'full', '--lr', '1e-3',
      '--batch-size', '2', '--steps', '4', '--seed', '3', '--threads', '2', '--save-every', '1', '--out', out, '-q'];
    const { child, done } = startCli(args);
    const logFile = join(out, 'log.jsonl');
    while (!(existsSync(logFile) && readFileSync(logFile, 'utf8').split('\n').filter(Boolean).length >= 2)) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await done;
    expect(existsSync(join(out, 'model.gguf'))).toBe(false);
    const again = await runCli([...args, '--resume']);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(out, 'model.gguf')).equals(readFileSync(straight.model!))).toBe(true);
    expect(readFileSync(join(out, 'model.latent.gguf')).equals(readFileSync(straight.head!))).toBe(true);
    expect(readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).step)).toEqual([1, 2, 3, 4]);
  }, 180_000);
});
