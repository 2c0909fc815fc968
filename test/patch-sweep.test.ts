// patch-sweep on the built-in organism (a Coconut model: e_{k+1} = final_norm(resid_post at step k)).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { builtinModel } from '../lib/engine/demo-model.js';
import { LatentHead } from '../lib/reasoning/latent-head.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { patchSweep } from '../lib/reasoning/patch-sweep.js';
import { expectUserError, runCli } from './helpers/cli.js';

const clean = 'Mia has 7 shells. She finds 5 more. She doubles what she has. How many shells does Mia have now?';
const corrupted = 'Mia has 9 shells. She finds 5 more. She doubles what she has. How many shells does Mia have now?';
let model: Model;
beforeAll(async () => {
  model = await loadModel(builtinModel().model);
});
afterAll(() => model?.dispose());

describe('patch-sweep', () => {
  test("patching a run with its own states changes nothing", async () => {
    const r = await patchSweep(model, clean, clean, { threads: 2, maxAnswerTokens: 8 });
    expect(r.points).toEqual(['input', ...Array.from({ length: model.info.nLayer }, (_, l) => `resid_post.${l}`)]);
    expect(r.cells).toHaveLength(r.latentSteps);
    for (const row of r.cells) for (const cell of row) {
      expect(cell.answerTokens).toEqual(r.clean.answerTokens);
      expect(Math.abs(cell.pClean - r.clean.pClean)).toBeLessThan(1e-6);
    }
    expect(r.recovered.flat().every((x) => x === null)).toBe(true);
  });

  test('the last layer at step k is the fed embedding of step k+1 (identity head): the same cell twice', async () => {
    const head = LatentHead.find(model)!;
    expect(head.settings.mode).toBe('coconut');
    const r = await patchSweep(model, clean, corrupted, { threads: 2, maxAnswerTokens: 8 });
    const last = r.points.length - 1;
    for (let k = 0; k + 1 < r.latentSteps; k++) {
      const a = r.cells[k][last].pClean;
      const b = r.cells[k + 1][0].pClean;
      // scale 1: exactly the same input; another scale would make these differ
      if (head.settings.scale === 1) expect(Math.abs(a - b), `step ${k}`).toBeLessThan(1e-5);
    }
    for (const row of r.cells) for (const cell of row) expect(cell.pClean).toBeGreaterThanOrEqual(0);
  });

  test('CLI: a table of recovered fractions; a layer out of range is refused', async () => {
    const ok = await runCli(['patch-sweep', '--clean', clean, '--corrupted', corrupted, '--layers', '0,3', '--threads', '2', '-q']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/step +input +resid_post\.0 +resid_post\.3/);
    expectUserError(await runCli(['patch-sweep', '--clean', clean, '--corrupted', corrupted, '--layers', '9', '-q']), /patch-sweep: layer 9 is out of range/);
  });
});
