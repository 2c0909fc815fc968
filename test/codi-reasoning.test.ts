// CODI latent reasoning against HF transformers ground truth (golden/hf/codi-tiny.reasoning.*):
// the codi-tiny checkpoint converted to GGUF + latent-head sidecar by our converter, then run
// through the Reasoner with early decodes, zero ablations and the no-latent answer as branches.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertHf } from '../lib/engine/convert.js';
import { buildPrompt, LatentHead } from '../lib/reasoning/latent-head.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { Reasoner, type ReasonResult } from '../lib/reasoning/reasoner.js';
import { golden } from './helpers/paths.js';
import { f32, i64, readSt, type StFile } from './helpers/safetensors.js';
import { relRow } from './helpers/compare.js';

interface Decode {
  answer_ids: number[];
  decode_trace: { margin?: number; top1_top2_margin?: number }[];
}
interface Question {
  index: number;
  question: string;
  prompt_ids: number[];
  answer_ids: number[];
  answer_stop_token: number | null;
  answer_decode_trace: Decode['decode_trace'];
  early_decode: Decode[];
  zero_ablation: Decode[];
  no_latent: Decode;
}

const MARGIN = 0.05;
const tmp = mkdtempSync(join(tmpdir(), 'lro-codi-'));
let model: Model;
let head: LatentHead;
let reasoner: Reasoner;
let g: StFile;
let questions: Question[];
const results: ReasonResult[] = [];
const worst = { h: 0, e: 0, resid: 0, finalNorm: 0, ablH: 0 };


/** Tokens must agree up to the first step whose reference top1-top2 margin is below MARGIN (a near-tie may flip). */
function expectDecode(ours: number[], ref: number[], trace: Decode['decode_trace'], what: string) {
  const margins = trace.map((t) => t.margin ?? t.top1_top2_margin ?? Infinity);
  let firstTie = margins.findIndex((m) => m < MARGIN);
  if (firstTie < 0) firstTie = Infinity;
  const n = Math.min(firstTie, Math.max(ours.length, ref.length));
  expect(ours.slice(0, n), what).toEqual(ref.slice(0, n));
}

beforeAll(async () => {
  const out = join(tmp, 'codi-tiny.f32.gguf');
  await convertHf(golden('hf', 'codi-tiny'), out, { type: 'f32', source: 'model.safetensors' });
  model = await loadModel(out);
  const found = LatentHead.find(model);
  if (!found) throw new Error('converted CODI model has no latent head sidecar');
  head = found;
  reasoner = new Reasoner(model, head, model.createSession({ nCtx: 512, threads: 2 }));
  g = readSt(golden('hf', 'codi-tiny.reasoning.safetensors'));
  questions = (JSON.parse(readFileSync(golden('hf', 'codi-tiny.reasoning.json'), 'utf8')) as { questions: Question[] }).questions;
  for (const q of questions)
    results.push(
      await reasoner.reason(q.question, {
        maxAnswerTokens: 12,
        earlyDecode: true,
        ablations: ['zero'],
        noReasoning: true,
        capture: ['resid_post.0', 'resid_post.1', 'resid_post.2', 'resid_post.3', 'final_norm'],
      }),
    );
}, 300_000);

afterAll(() => {
  console.log(`codi-tiny vs HF (max relative L2 per row): ${JSON.stringify(worst)}`);
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('CODI latent reasoning (codi-tiny, HF ground truth)', () => {
  it('has the checkpoint settings in the sidecar', () => {
    expect(head.settings.mode).toBe('codi');
    expect(head.settings.steps).toBe(6);
    expect([head.settings.padId, head.settings.botId, head.settings.eotId]).toEqual([2000, 2001, 2002]);
    expect(head.settings.promptFormat).toBe('codi-answer-only');
  });

  it('builds the answer-only prompt ids', () => {
    for (const q of questions) expect(buildPrompt(model, head.settings, q.question, 'codi-answer-only')).toEqual(q.prompt_ids);
  });

  it('reproduces h_k and e_k', () => {
    questions.forEach((q, i) => {
      const gh = f32(g, `q${i}.h`);
      const ge = f32(g, `q${i}.e`);
      const r = results[i];
      expect(r.steps.length).toBe(7);
      for (let k = 0; k <= 6; k++) {
        const eh = relRow(r.steps[k].h, gh.subarray(k * 256, (k + 1) * 256));
        const ee = relRow(r.steps[k].e, ge.subarray(k * 256, (k + 1) * 256));
        worst.h = Math.max(worst.h, eh);
        worst.e = Math.max(worst.e, ee);
        // HF float32 vs float64 measured 2.0e-5; allow 5x.
        expect(eh, `q${i} h_${k}`).toBeLessThan(1e-4);
        expect(ee, `q${i} e_${k}`).toBeLessThan(1e-4);
      }
    });
  });

  it('reproduces the logit-lens top-10', () => {
    questions.forEach((q, i) => {
      const ids = i64(g, `q${i}.lens_top_ids`);
      const probs = f32(g, `q${i}.lens_top_probs`);
      for (let k = 0; k <= 6; k++) {
        const ours = results[i].steps[k].topK;
        expect(ours.map((t) => t.id), `q${i} lens ${k}`).toEqual(ids.slice(k * 10, k * 10 + 10));
        ours.forEach((t, j) => expect(Math.abs(t.prob - probs[k * 10 + j])).toBeLessThan(1e-4));
      }
    });
  });

  it('reproduces the answers', () => {
    questions.forEach((q, i) => {
      expectDecode(results[i].answerTokens, q.answer_ids, q.answer_decode_trace, `q${i} answer`);
    });
  });

  it('reproduces every resid_post.L and final_norm at every position', () => {
    questions.forEach((q, i) => {
      const r = results[i];
      for (const name of ['resid_post.0', 'resid_post.1', 'resid_post.2', 'resid_post.3', 'final_norm']) {
        const ref = f32(g, `q${i}.${name}`);
        const cap = r.captures[name];
        const T = ref.length / 256;
        const rows = Math.min(T, cap.positions.length);
        expect(cap.positions.slice(0, rows)).toEqual(Array.from({ length: rows }, (_, p) => p));
        for (let p = 0; p < rows; p++) {
          const e = relRow(cap.data.subarray(p * 256, (p + 1) * 256), ref.subarray(p * 256, (p + 1) * 256));
          if (name === 'final_norm') worst.finalNorm = Math.max(worst.finalNorm, e);
          else worst.resid = Math.max(worst.resid, e);
          expect(e, `q${i} ${name} position ${p}`).toBeLessThan(1e-4);
        }
        if (r.answerTokens.length === q.answer_ids.length) expect(cap.positions.length).toBe(T);
      }
    });
  });

  it('reproduces the early decodes', () => {
    questions.forEach((q, i) => {
      const ours = results[i].earlyDecodes;
      expect(ours.map((e) => e.latents)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      q.early_decode.forEach((ref, j) => expectDecode(ours[j].answerTokens, ref.answer_ids, ref.decode_trace, `q${i} early ${j}`));
    });
  });

  it('reproduces the zero ablations and their states', () => {
    questions.forEach((q, i) => {
      const ours = results[i].ablations.zero!;
      expect(ours.map((a) => a.step)).toEqual([0, 1, 2, 3, 4, 5]);
      q.zero_ablation.forEach((ref, k) => {
        expectDecode(ours[k].answerTokens, ref.answer_ids, ref.decode_trace, `q${i} zero ${k}`);
        const gh = f32(g, `q${i}.zero_ablate.${k}.h`);
        for (let s = 0; s <= 6; s++) {
          const e = relRow(ours[k].h[s], gh.subarray(s * 256, (s + 1) * 256));
          worst.ablH = Math.max(worst.ablH, e);
          expect(e, `q${i} zero ${k} h_${s}`).toBeLessThan(1e-4);
        }
      });
    });
  });

  it('reproduces the no-latent answer', () => {
    questions.forEach((q, i) => {
      const ref = q.no_latent;
      expectDecode(results[i].noReasoning!.answerTokens, ref.answer_ids, ref.decode_trace, `q${i} no-latent`);
    });
  });
});
