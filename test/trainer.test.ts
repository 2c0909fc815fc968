// The native LoRA trainer through the addon: the oracle-lora goldens (loss, accumulation + clipping
// step) and a checkpoint round trip. The full numeric suite is native/test/test_train.cpp.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native, type NativeModel, type NativeTrainExample } from '../lib/core/native.js';
import { readSafetensors } from '../lib/core/safetensors.js';
import { golden } from './helpers/paths.js';

let model: NativeModel;
let examples: NativeTrainExample[];
const tmp = mkdtempSync(join(tmpdir(), 'lro-trainer-'));

function ints(data: Uint8Array): Int32Array {
  const v = new BigInt64Array(data.buffer, data.byteOffset, data.byteLength / 8);
  return Int32Array.from(v, (x) => Number(x));
}
function floats(data: Uint8Array): Float32Array {
  return new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
}

beforeAll(async () => {
  model = await native().loadModel(golden('gguf', 'tiny-l3.f32.gguf'), false);
  const { tensors } = await readSafetensors(golden('hf', 'oracle-lora.safetensors'));
  const t = (name: string) => {
    const e = tensors.get(name);
    if (!e) throw new Error(`missing ${name}`);
    return e.data;
  };
  examples = [0, 1, 2].map((b) => ({
    tokens: ints(t(`input_ids.${b}`)),
    labels: ints(t(`labels.${b}`)),
    injectPositions: ints(t(`positions.${b}`)),
    vectors: floats(t(`vectors.${b}`)),
  }));
});
afterAll(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const peft = () => golden('hf', 'oracle-lora-adapter');

describe('NativeTrainer', () => {
  it('reproduces the oracle-lora loss and the accumulated, clipped first step', async () => {
    const tr = new (native().NativeTrainer)(model, { initAdapter: peft() }, { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1 }, { threads: 2 });
    expect(tr.info()).toMatchObject({ rank: 8, alpha: 16, pairs: 28, step: 0 });
    expect(await tr.evalLoss(examples)).toBeCloseTo(27.552694, 3);
    const r = await tr.step(examples, [[0, 1], [2]]);
    const gold = JSON.parse(readFileSync(golden('hf', 'oracle-lora.json'), 'utf8')).accum_clip.steps[0];
    expect(r.microLosses[0]).toBeCloseTo(gold.micro_batch_losses[0], 3);
    expect(r.microLosses[1]).toBeCloseTo(gold.micro_batch_losses[1], 3);
    expect(r.gradNorm / gold.grad_norm_preclip).toBeCloseTo(1, 4);
    expect(r.clipCoef).toBeCloseTo(gold.clip_coef, 6);
    expect(r).toMatchObject({ step: 1, tokens: 123, lossTokens: 28 });
    tr.dispose();
  });

  it('resumes from a checkpoint to the same losses', async () => {
    const make = () => new (native().NativeTrainer)(model, { initAdapter: peft() }, { lr: 1e-3 }, { threads: 2, recompute: true });
    const a = make();
    await a.step(examples);
    a.saveCheckpoint(join(tmp, 'ck.gguf'));
    const next = await a.step(examples);
    const b = make();
    b.loadCheckpoint(join(tmp, 'ck.gguf'));
    expect(b.info()).toMatchObject({ step: 1, dataPosition: 3 });
    const resumed = await b.step(examples);
    expect(resumed.loss).toBe(next.loss);
    a.saveAdapter(join(tmp, 'a.gguf'));
    b.saveAdapter(join(tmp, 'b.gguf'));
    expect(readFileSync(join(tmp, 'a.gguf')).equals(readFileSync(join(tmp, 'b.gguf')))).toBe(true);
    expect(native().loadAdapter(model, join(tmp, 'a.gguf')).info()).toMatchObject({ alpha: 16, rank: 8 });
    a.dispose();
    b.dispose();
  });

  it('rejects bad examples and a second call while a step runs', async () => {
    const tr = new (native().NativeTrainer)(model, { rank: 4, targets: ['q', 'v'] }, {}, { threads: 2 });
    await expect(tr.step([{ tokens: new Int32Array([1, 2, 3]), labels: new Int32Array([1]) }])).rejects.toThrow(/labels/);
    await expect(
      tr.step([{ tokens: new Int32Array([1, 2]), lossMask: new Uint8Array([0, 1]), injectPositions: new Int32Array([7]), vectors: new Float32Array(256) }]),
    ).rejects.toThrow(/injection position 7/);
    const p = tr.step(examples);
    expect(() => tr.saveAdapter(join(tmp, 'x.gguf'))).toThrow(/busy/);
    await p;
    tr.dispose();
  });
});
