// The oracle example format: ids, loss mask and placeholder positions must equal the
// golden/hf/oracle-lora examples (HF tokenizer + Activation Oracles' template).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../lib/engine/model.js';
import { buildOracleInput, readOracleExamples, VectorStore, type OracleExample } from '../lib/oracle/oracle-data.js';
import { golden } from './helpers/paths.js';

interface GoldenExample {
  K: number;
  text: string;
  answer: string;
  input_ids: number[];
  labels: number[];
  placeholder_positions: number[];
}

let model: Model;
const tmp = mkdtempSync(join(tmpdir(), 'lro-oracle-data-'));

beforeAll(async () => {
  model = await loadModel(golden('gguf', 'tiny-l3.f32.gguf'));
});
afterAll(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('oracle examples', () => {
  it('builds the golden ids, loss tokens and placeholder positions', () => {
    const examples = (JSON.parse(readFileSync(golden('hf', 'oracle-lora.json'), 'utf8')) as { examples: GoldenExample[] }).examples;
    for (const g of examples) {
      const question = g.text.split('\n').slice(2).join('\n');
      const ex: OracleExample = { id: 'g', task: 't', layer: 2, question, answer: g.answer, vectors: Array.from({ length: g.K }, () => [0]), source: {} };
      const r = buildOracleInput(model, ex);
      expect(r.ids).toEqual(g.input_ids);
      expect(r.positions).toEqual(g.placeholder_positions);
      expect(r.lossMask).toEqual(g.labels.map((l) => l !== -100));
    }
  });

  it('reads JSONL with errors naming the line and field, and loads inline vectors', async () => {
    const good = join(tmp, 'good.jsonl');
    writeFileSync(good, JSON.stringify({ id: 'a', task: 'x', layer: 1, question: 'q?', answer: ' 1', vectors: [[1, 2]] }) + '\n');
    const got: OracleExample[] = [];
    for await (const ex of readOracleExamples(good)) got.push(ex);
    expect(got.length).toBe(1);
    expect(Array.from(await new VectorStore(good).load(got[0], 2))).toEqual([1, 2]);
    await expect(new VectorStore(good).load(got[0], 3)).rejects.toThrow(/width/);
    const bad = join(tmp, 'bad.jsonl');
    writeFileSync(bad, JSON.stringify({ id: 'a', task: 'x', layer: 1, question: 'q', answer: 'a', vectors: [[1]] }) + '\n{"id": "b"}\n');
    const read = async () => {
      for await (const _ of readOracleExamples(bad)) void _;
    };
    await expect(read()).rejects.toThrow(/bad\.jsonl:2: field/);
  });
});

describe('shuffled baseline partners', () => {
  it('pair examples of the same vector count from other questions', async () => {
    const { shufflePartners } = await import('../lib/oracle/eval-oracle.js');
    const questions = ['a', 'a', 'b', 'b', 'c', 'c', 'c', 'd', 'x', 'y'];
    const counts = [1, 1, 1, 1, 1, 1, 1, 1, 2, 2];
    for (const seed of [0, 1, 2, 3]) {
      const p = shufflePartners(counts, seed, questions);
      p.forEach((j, i) => {
        expect(j).toBeGreaterThanOrEqual(0);
        expect(j).not.toBe(i);
        expect(counts[j]).toBe(counts[i]);
        expect(questions[j]).not.toBe(questions[i]);
      });
      expect(new Set(p).size).toBe(p.length); // a permutation: every example is someone's partner once
    }
  });
});
