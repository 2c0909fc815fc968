// Latent inversion on the built-in organism: the similarities it reports are those of a plain,
// separate forward pass of question + text; a beam of one follows the model's greedy
// continuation; and bad requests name the record, step or layer.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { capture } from '../lib/capture/capture.js';
import { readCaptureManifest, readCaptureTensorF32 } from '../lib/index.js';
import { builtinModel } from '../lib/engine/demo-model.js';
import { invertLatent } from '../lib/capture/invert.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { native } from '../lib/core/native.js';
import { expectUserError, runCli } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-invert-'));
const cap = join(tmp, 'cap');
const question = 'Mia has 7 shells. She finds 5 more. She doubles what she has. How many shells does Mia have now?';
let model: Model;
beforeAll(async () => {
  model = await loadModel(builtinModel().model);
  await capture(model, [{ id: 'q', text: question }], { out: cap, points: ['resid_post.1', 'resid_post.3'], positions: ['latent'], threads: 2, maxAnswerTokens: 4 });
});
afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('invert', () => {
  test("each text's similarity is the cosine of a separate forward pass of question + text with the latent state", async () => {
    const r = await invertLatent(model, cap, 'q', 2, { threads: 2, beam: 4, maxTokens: 5, top: 6 });
    expect(r.point).toBe('resid_post.3');
    expect(r.candidates.length).toBeGreaterThan(1);
    expect(new Set(r.candidates.map((c) => c.text)).size).toBe(r.candidates.length);
    for (let i = 1; i < r.candidates.length; i++) expect(r.candidates[i].cosine).toBeLessThanOrEqual(r.candidates[i - 1].cosine);
    const m = await readCaptureManifest(cap);
    const rec = m.records[0];
    const t = rec.tensors['resid_post.3'];
    const latentPos = rec.positionKinds!.flatMap((k, i) => (k === 'latent' ? [i] : []));
    const rows = await readCaptureTensorF32(cap, t);
    const w = model.info.nEmbd;
    const row = t.positions!.indexOf(latentPos[2]);
    const latent = rows.slice(row * w, (row + 1) * w);
    for (const c of r.candidates.slice(0, 3)) {
      const s = model.createSession({ nCtx: 512, threads: 2 });
      try {
        const out = await s.eval({ tokens: [...r.promptTokens, ...c.tokens], outputRows: 'last', capture: ['resid_post.3'] });
        const cos = native().vectorStats(out.captures['resid_post.3'], latent).cosineToPrev!;
        expect(Math.abs(cos - c.cosine), c.text).toBeLessThan(2e-5);
      } finally {
        s.dispose();
      }
    }
  });

  test('a beam of one walks the greedy continuation of the question', async () => {
    const r = await invertLatent(model, cap, 'q', 0, { threads: 2, beam: 1, maxTokens: 4, layer: 1 });
    expect(r.point).toBe('resid_post.1');
    const s = model.createSession({ nCtx: 512, threads: 2 });
    const greedy: number[] = [];
    try {
      let out = await s.eval({ tokens: r.promptTokens, outputRows: 'last', logits: true });
      for (let i = 0; i < 4; i++) {
        const id = native().logitStats(out.logits!, 0, model.info.nVocab, model.info.nVocab, 1).topIds[0];
        if (model.isEog(id)) break;
        greedy.push(id);
        out = await s.eval({ tokens: [id], positions: [r.promptTokens.length + i], outputRows: 'last', logits: true });
      }
    } finally {
      s.dispose();
    }
    for (const c of r.candidates) expect(greedy.slice(0, c.tokens.length)).toEqual(c.tokens);
    expect(r.candidates.map((c) => c.tokens.length).sort()).toEqual(greedy.map((_, i) => i + 1));
  });

  test('the CLI prints the texts; bad records, steps and layers are named', async () => {
    const r = await runCli(['invert', '--capture', cap, '--record', 'q', '--step', '1', '--max-tokens', '3', '--beam', '3', '--threads', '2', '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^record q, latent step 1, resid_post\.3/);
    expect(r.stdout.split('\n').filter((l) => /^ {2}\d\.\d{4} {2}"/.test(l)).length).toBeGreaterThan(0);
    expectUserError(await runCli(['invert', '--capture', cap, '--record', 'nope', '--step', '0', '-q']), /no record "nope" \(it has 1: q\)/);
    expectUserError(await runCli(['invert', '--capture', cap, '--record', 'q', '--step', '99', '-q']), /--step 99: record "q" has \d+ latent steps/);
    expectUserError(await runCli(['invert', '--capture', cap, '--record', 'q', '--step', '0', '--layer', '2', '-q']), /has no resid_post\.2 \(it has resid_post\.1, resid_post\.3\); choose --layer/);
  });
});
