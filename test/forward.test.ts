// Forward pass vs llama.cpp goldens (README §5.2, tolerances §7): every position of the 3 prompts,
// logits, final norm and resid_post.0..3, for the 7 GGUF types.
import { afterAll, describe, expect, test } from 'vitest';
import { loadModel } from '../lib/index.js';
import { fmt, maxAbsDiff, RowStats } from './helpers/compare.js';
import { golden, GGUF_TYPES, modelPath, PROMPTS, type GgufTypeName } from './helpers/paths.js';
import { f32, i32, readSt } from './helpers/safetensors.js';

const N_LAYER = 4;

// §7.2 loose bounds for engines with their own kernels (about 2-3x the measured f32-arithmetic
// differences). resid_post has no bound in the README table; 3x the measured values of table (b)
// for resid_post.3 catches a broken layer without tripping on activation rounding.
const LOOSE: Record<Exclude<GgufTypeName, 'f32'>, { logits: number; finalNorm: number; relRms: number; cos: number; top1: number; resid: number }> = {
  f16: { logits: 0.3, finalNorm: 0.04, relRms: 0.006, cos: 0.9999, top1: 0.97, resid: 0.24 },
  bf16: { logits: 2, finalNorm: 0.25, relRms: 0.04, cos: 0.998, top1: 0.9, resid: 2.1 },
  q8_0: { logits: 6, finalNorm: 0.8, relRms: 0.12, cos: 0.985, top1: 0.8, resid: 6.6 },
  q4_0: { logits: 6, finalNorm: 0.8, relRms: 0.12, cos: 0.985, top1: 0.8, resid: 6.2 },
  q4_k_m: { logits: 8, finalNorm: 1.0, relRms: 0.15, cos: 0.98, top1: 0.8, resid: 11 },
  q6_k: { logits: 8, finalNorm: 1.0, relRms: 0.15, cos: 0.98, top1: 0.8, resid: 9.3 },
};
// §7.1 f32 tolerances (atol)
const TIGHT = { logits: 1e-3, finalNorm: 1e-4, resid: 1e-3 };

interface Measured {
  type: string;
  logits: RowStats;
  finalNorm: number;
  resid: number[];
}
const results: Measured[] = [];

afterAll(() => {
  if (results.length === 0) return;
  const head = ['type', 'logits max', 'final_norm', 'resid_post.0', '.1', '.2', '.3', 'rel RMS', 'min cos', 'top-1'];
  const rows = results.map((r) => [
    r.type,
    fmt(r.logits.maxAbs),
    fmt(r.finalNorm),
    ...r.resid.map(fmt),
    fmt(r.logits.relRms),
    r.logits.minCos.toFixed(6),
    `${r.logits.top1Agree}/${r.logits.rows}`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i])).join('  ');
  console.log(['forward vs llama.cpp goldens (max |diff| over p12+p40+p75)', line(head), ...rows.map(line)].join('\n'));
});

describe('forward goldens', () => {
  test.each(GGUF_TYPES)('%s: all positions of p12, p40, p75', async (type) => {
    const model = await loadModel(modelPath(type));
    const session = model.createSession({ nCtx: 128 });
    const m: Measured = { type, logits: new RowStats(), finalNorm: 0, resid: [0, 0, 0, 0] };
    try {
      for (const p of PROMPTS) {
        const g = readSt(golden('llamacpp', `tiny-l3.${type}.${p}.safetensors`));
        const tokens = i32(g, 'tokens');
        const out = await session.eval({
          tokens,
          outputRows: 'all',
          logits: true,
          finalNorm: true,
          capture: Array.from({ length: N_LAYER }, (_, l) => `resid_post.${l}`),
        });
        session.remove(0);
        expect(out.rows).toEqual(tokens.map((_, i) => i));
        m.logits.add(out.logits!, f32(g, 'logits'), model.info.nVocab);
        m.finalNorm = Math.max(m.finalNorm, maxAbsDiff(out.finalNorm!, f32(g, 'final_norm')));
        for (let l = 0; l < N_LAYER; l++) m.resid[l] = Math.max(m.resid[l], maxAbsDiff(out.captures[`resid_post.${l}`], f32(g, `resid_post.${l}`)));
      }
    } finally {
      session.dispose();
      model.dispose();
    }
    results.push(m);
    if (type === 'f32') {
      expect(m.logits.maxAbs).toBeLessThanOrEqual(TIGHT.logits);
      expect(m.finalNorm).toBeLessThanOrEqual(TIGHT.finalNorm);
      for (const r of m.resid) expect(r).toBeLessThanOrEqual(TIGHT.resid);
      expect(m.logits.top1Agree).toBe(m.logits.rows);
    } else {
      const b = LOOSE[type];
      expect(m.logits.maxAbs, 'logits max |diff|').toBeLessThanOrEqual(b.logits);
      expect(m.finalNorm, 'final_norm max |diff|').toBeLessThanOrEqual(b.finalNorm);
      expect(m.logits.relRms, 'logits rel. RMS').toBeLessThanOrEqual(b.relRms);
      expect(m.logits.minCos, 'per-row cosine').toBeGreaterThanOrEqual(b.cos);
      expect(m.logits.top1Agree / m.logits.rows, 'top-1 agreement').toBeGreaterThanOrEqual(b.top1);
      for (const r of m.resid) expect(r, 'resid_post max |diff|').toBeLessThanOrEqual(b.resid);
    }
  });
});
