// The organism recipe's quick preset: the whole path (data, tokenizer, init, LM pretraining, CODI)
// runs, the losses fall, the outputs load as a model with a CODI head, the run is deterministic,
// and `organism eval` reports on them. The shipped organism's accuracy is measured by the bench
// and `organism eval`, not here.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { embeddingScale } from '../lib/organism/recipe.js';
import { LatentHead } from '../lib/reasoning/latent-head.js';
import { loadModel } from '../lib/engine/model.js';
import { runCli } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-organism-'));

function losses(log: string): number[] {
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { loss: number }).loss);
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

describe('organism train --quick', () => {
  it('trains, the losses fall, the outputs load, the same seed gives the same file, and eval reports', async () => {
    const out = join(tmp, 'a');
    const r = await runCli(['organism', 'train', '--quick', '--out', out, '--threads', '2', '-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const pre = losses(join(out, 'pretrain', 'log.jsonl'));
    const recipe = JSON.parse(readFileSync(join(out, 'recipe.json'), 'utf8')) as { method: string; coconut: { stages: number; latentsPerStep: number; scaleToEmbeddings: boolean } };
    const last = recipe.method === 'codi' ? 'codi' : `coconut-${recipe.coconut.stages}`;
    const codi = losses(join(out, last, 'log.jsonl'));
    expect(mean(pre.slice(-5))).toBeLessThan(0.8 * mean(pre.slice(0, 5)));
    expect(mean(codi.slice(-5))).toBeLessThan(mean(codi.slice(0, 5)));

    const m = await loadModel(join(out, 'organism.gguf'));
    const head = LatentHead.find(m);
    expect(head?.settings.mode).toBe(recipe.method);
    // Coconut's feed at the pretrained embeddings' norm: e = scale x final_norm(h), scale well below 1.
    if (recipe.method === 'coconut' && recipe.coconut.scaleToEmbeddings) {
      expect(head!.settings.scale).toBeCloseTo(embeddingScale(join(out, 'pretrain', 'model.gguf')), 6);
      expect(head!.settings.scale).toBeLessThan(0.5);
    }
    expect(typeof m.metadata()['lro.organism.recipe']).toBe('string');
    m.dispose();

    const again = join(tmp, 'b');
    expect((await runCli(['organism', 'train', '--quick', '--out', again, '--threads', '2', '-q'])).code).toBe(0);
    expect(readFileSync(join(again, 'organism.gguf')).equals(readFileSync(join(out, 'organism.gguf')))).toBe(true);

    const refused = await runCli(['organism', 'train', '--quick', '--out', out, '-q']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--resume/);

    const ev = await runCli(['organism', 'eval', '--model', join(out, 'organism.gguf'), '-n', '8', '--probe-train', '12', '--invert', '2', '--json', '-q']);
    expect(ev.code).toBe(0);
    type R = { n: number; correct: number };
    const rep = JSON.parse(ev.stdout) as {
      withLatents: { n: number };
      heldoutPhrasings: R;
      settings: { templates: string };
      zeroAblation: unknown[];
      probe: { best: number[][] };
      inversion: { problems: number; latentsPerStep: number; perLatent: { programStep: number | null; ownResultTop1: R; ownResultTop8: R; finalAnswerTop1: R }[] };
    };
    expect(rep.withLatents.n).toBe(8);
    // Test problems use the trained phrasings; as many with a held-out phrasing are scored beside them.
    expect(rep.settings.templates).toBe('train');
    expect(rep.heldoutPhrasings.n).toBe(8);
    const latents = recipe.method === 'codi' ? 3 : recipe.coconut.stages * recipe.coconut.latentsPerStep;
    expect(rep.zeroAblation.length).toBe(latents);
    expect(rep.probe.best.length).toBe(3);
    // Inversion: every latent step of 2 problems; latent k stands for problem step k / latentsPerStep.
    expect(rep.inversion.problems).toBe(2);
    expect(rep.inversion.perLatent).toHaveLength(latents);
    rep.inversion.perLatent.forEach((x, k) => {
      const j = Math.floor(k / rep.inversion.latentsPerStep);
      expect(x.programStep).toBe(j < 3 ? j : null);
      expect(x.finalAnswerTop1.n).toBe(2);
      expect(x.ownResultTop1.correct).toBeLessThanOrEqual(x.ownResultTop8.correct);
    });
    expect(existsSync(join(out, 'DONE'))).toBe(true);

    // export-hf round trip: GGUF -> HF folder -> convert -> GGUF computes the same.
    const hf = join(tmp, 'hf');
    const ex = await runCli(['export-hf', join(out, 'organism.gguf'), '--out', hf, '--json']);
    expect(ex.code).toBe(0);
    expect((JSON.parse(ex.stdout) as { files: string[] }).files).toEqual(
      expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'README.json']),
    );
    expect((await runCli(['export-hf', join(out, 'organism.gguf'), '--out', hf])).stderr).toMatch(/not empty/);
    const back = join(tmp, 'back.gguf');
    expect((await runCli(['convert', hf, '--out', back, '-q'])).code).toBe(0);
    const a = await loadModel(join(out, 'organism.gguf'));
    const b = await loadModel(back);
    try {
      const text = 'Mia has 7 shells. She finds 5 more. How many shells does Mia have now?<|bot|>';
      const ids = a.tokenize(text, { parseSpecial: true });
      expect(b.tokenize(text, { parseSpecial: true })).toEqual(ids);
      const [la, lb] = await Promise.all([a, b].map(async (m) => {
        const s = m.createSession({});
        try {
          return (await s.eval({ tokens: ids })).logits!;
        } finally {
          s.dispose();
        }
      }));
      expect(Array.from(lb)).toEqual(Array.from(la));
      const ha = LatentHead.find(a)!;
      const hb = LatentHead.find(b)!;
      expect({ ...hb.settings, path: '' }).toEqual({ ...ha.settings, path: '' });
      const z = Float32Array.from({ length: a.info.nEmbd }, (_, i) => Math.sin(i));
      expect(Array.from(hb.project(z))).toEqual(Array.from(ha.project(z)));
    } finally {
      a.dispose();
      b.dispose();
    }
  }, 240_000);
});
