// Latent feedback loop (README §5.3): the final-norm state fed back as the next input embedding.
import { afterAll, describe, expect, test } from 'vitest';
import { loadModel, native } from '../lib/index.js';
import { fmt, maxAbsDiff } from './helpers/compare.js';
import { golden, modelPath } from './helpers/paths.js';
import { f32, i32, readSt } from './helpers/safetensors.js';

const D = 256;
const V = 2003;
const row = (a: Float32Array, r: number, w: number) => a.subarray(r * w, (r + 1) * w);
const greedy = (logits: Float32Array) => native().sampleToken(logits, 0, V, { temperature: 0, topK: 0, topP: 1, seed: 0, step: 0 });

const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(['latent loop vs llama.cpp (max |diff| per step)', ...report].join('\n'));
});

describe('latent loop goldens', () => {
  test('f32: 6 latent steps, token 384, 8 greedy tokens (§7.1 tolerances)', async () => {
    const g = readSt(golden('llamacpp', 'tiny-l3.f32.latent.safetensors'));
    const model = await loadModel(modelPath('f32'));
    const s = model.createSession({ nCtx: 64 });
    try {
      let out = await s.eval({ tokens: i32(g, 'prompt.tokens'), logits: true, finalNorm: true });
      const promptDiff = maxAbsDiff(out.logits!, f32(g, 'prompt.last_logits'));
      expect(promptDiff).toBeLessThanOrEqual(1e-3);

      let h = out.finalNorm!;
      const hDiff: number[] = [];
      const lDiff: number[] = [];
      const oDiff: number[] = [];
      for (let k = 0; k < 6; k++) {
        hDiff.push(maxAbsDiff(h, row(f32(g, 'latent.h'), k, D)));
        out = await s.eval({ embeddings: h, logits: true, finalNorm: true });
        expect(s.posMax(0)).toBe(40 + k);
        lDiff.push(maxAbsDiff(out.logits!, row(f32(g, 'latent.logits'), k, V)));
        oDiff.push(maxAbsDiff(out.finalNorm!, row(f32(g, 'latent.out_h'), k, D)));
        h = out.finalNorm!;
      }
      expect(i32(g, 'after.input_token')).toEqual([384]);
      out = await s.eval({ tokens: [384], logits: true, finalNorm: true });
      expect(s.posMax(0)).toBe(46);
      const want = i32(g, 'after.tokens');
      const got: number[] = [];
      const aL: number[] = [];
      const aF: number[] = [];
      for (let i = 0; i < 8; i++) {
        aL.push(maxAbsDiff(out.logits!, row(f32(g, 'after.logits'), i, V)));
        aF.push(maxAbsDiff(out.finalNorm!, row(f32(g, 'after.final_norm'), i, D)));
        const t = greedy(out.logits!);
        got.push(t);
        if (i < 7) out = await s.eval({ tokens: [t], logits: true, finalNorm: true });
      }
      report.push(
        `f32 prompt.last_logits ${fmt(promptDiff)}`,
        `f32 latent.h      ${hDiff.map(fmt).join(' ')}`,
        `f32 latent.logits ${lDiff.map(fmt).join(' ')}`,
        `f32 latent.out_h  ${oDiff.map(fmt).join(' ')}`,
        `f32 after.logits  ${aL.map(fmt).join(' ')}`,
        `f32 after.final_norm ${aF.map(fmt).join(' ')}`,
        `f32 after.tokens  ${JSON.stringify(got)} (golden ${JSON.stringify(want)})`,
      );
      for (const d of hDiff) expect(d).toBeLessThanOrEqual(2e-2);
      for (const d of oDiff) expect(d).toBeLessThanOrEqual(2e-2);
      for (const d of lDiff) expect(d).toBeLessThanOrEqual(0.2);
      for (const d of aL) expect(d).toBeLessThanOrEqual(0.3);
      for (const d of aF) expect(d).toBeLessThanOrEqual(0.05);
      expect(got).toEqual(want);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  test('q8_0: step 0 only, with the loose q8_0 bounds (§7.2)', async () => {
    const g = readSt(golden('llamacpp', 'tiny-l3.q8_0.latent.safetensors'));
    const model = await loadModel(modelPath('q8_0'));
    const s = model.createSession({ nCtx: 64 });
    try {
      let out = await s.eval({ tokens: i32(g, 'prompt.tokens'), logits: true, finalNorm: true });
      const p = maxAbsDiff(out.logits!, f32(g, 'prompt.last_logits'));
      const h0 = maxAbsDiff(out.finalNorm!, row(f32(g, 'latent.h'), 0, D));
      out = await s.eval({ embeddings: out.finalNorm!, logits: true, finalNorm: true });
      const l0 = maxAbsDiff(out.logits!, row(f32(g, 'latent.logits'), 0, V));
      const o0 = maxAbsDiff(out.finalNorm!, row(f32(g, 'latent.out_h'), 0, D));
      report.push(`q8_0 step 0: prompt logits ${fmt(p)}, latent.h ${fmt(h0)}, latent.logits ${fmt(l0)}, latent.out_h ${fmt(o0)}`);
      expect(p).toBeLessThanOrEqual(6);
      expect(h0).toBeLessThanOrEqual(0.8);
      expect(l0).toBeLessThanOrEqual(6);
      expect(o0).toBeLessThanOrEqual(0.8);
    } finally {
      s.dispose();
      model.dispose();
    }
  });
});
