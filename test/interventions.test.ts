// Intervention inputs are checked before anything runs: every field named, the width expected and
// the width given; steer names its hook point `at` like every other intervention.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRandomDemoModel } from '../lib/engine/demo-model.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { reason } from '../lib/reasoning/reason.js';

let model: Model;
let head: string;
beforeAll(async () => {
  const demo = await ensureRandomDemoModel();
  model = await loadModel(demo.model);
  head = demo.latentHead;
});
afterAll(() => model?.dispose());

const run = (interventions: unknown[]) =>
  reason(model, 'Tom has 3 apples.', { latentHead: head, maxAnswerTokens: 2, interventions: interventions as never, threads: 2 });

describe('interventions', () => {
  it('names the field and both widths when a vector has the wrong length', async () => {
    const d = model.info.nEmbd;
    for (const len of [0, 10, 512]) {
      await expect(run([{ kind: 'patch', step: 0, vector: new Float32Array(len) }])).rejects.toThrow(
        `interventions[0].vector: expected ${d} values (the model's width), got ${len}`,
      );
    }
    await expect(run([{ kind: 'mean', step: 1 }])).rejects.toThrow(/interventions\[0\]\.vector: expected a Float32Array/);
    await expect(run([{ kind: 'zero', step: 99 }])).rejects.toThrow(/interventions\[0\]\.step: 99 is outside the latent steps 0\.\.5/);
    await expect(run([{ kind: 'zero', step: 0, at: 'resid_post' }])).rejects.toThrow(/interventions\[0\]\.at: expected "input", embed or a layer hook point/);
    await expect(run([{ kind: 'swap', step: 0, with: 7 }])).rejects.toThrow(/interventions\[0\]\.with/);
    await expect(run([{ kind: 'nope', step: 0 }])).rejects.toThrow(/interventions\[0\]\.kind/);
  });

  it('steer takes its hook point as `at` and changes the run', async () => {
    const v = Float32Array.from({ length: model.info.nEmbd }, (_, i) => (i % 7) - 3);
    const clean = await run([]);
    const steered = await run([{ kind: 'steer', at: 'resid_post.1', vector: v, scale: 50 }]);
    expect(steered.steps[2].h).not.toEqual(clean.steps[2].h);
    await expect(run([{ kind: 'steer', point: 'resid_post.1', vector: v }])).rejects.toThrow(/interventions\[0\]/);
  });
});
