// Seeded mutation tests of the TS readers of a user's files (the native parsers are fuzzed by
// tools/fuzz.sh): a capture manifest and oracle JSONL lines, mutated structurally (keys dropped,
// values of other types, huge or negative numbers, duplicated entries) and byte-wise. Each
// mutant must either read or be refused with an InputError naming the file; nothing else.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readCaptureManifest } from '../lib/capture/capture-manifest.js';
import { InputError } from '../lib/core/errors.js';
import { readOracleExamples } from '../lib/oracle/oracle-data.js';
import { runCli } from './helpers/cli.js';
import { modelPath } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-mutation-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// splitmix-style seeded numbers (the test's own; no dependency)
function rng(seed: number): () => number {
  let s = BigInt(seed) & 0xffffffffffffffffn;
  return () => {
    s = (s + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    return Number((z ^ (z >> 31n)) >> 11n) / 2 ** 53;
  };
}

const ODD_VALUES: unknown[] = [null, 0, -1, 1.5, 2 ** 53, -(2 ** 60), 1e308, '', 'x', 'shard-00000.safetensors', [], [1, 2], {}, { a: 1 }, true, false];

/** Every path to a value inside a JSON value. */
function paths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

function mutate(doc: unknown, next: () => number): unknown {
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  const all = paths(copy).filter((p) => p.length > 0);
  const p = all[Math.floor(next() * all.length)];
  let parent: Record<string | number, unknown> = copy;
  for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const key = p[p.length - 1];
  const kind = Math.floor(next() * 4);
  if (kind === 0 && !Array.isArray(parent)) delete parent[key];
  else if (kind === 1 && Array.isArray(parent)) parent.splice(Number(key), 0, structuredClone(parent[key as number]));
  else parent[key] = ODD_VALUES[Math.floor(next() * ODD_VALUES.length)];
  return copy;
}

function byteMutant(text: string, next: () => number): string {
  const b = Buffer.from(text);
  const n = 1 + Math.floor(next() * 4);
  for (let i = 0; i < n; i++) b[Math.floor(next() * b.length)] = Math.floor(next() * 256);
  return next() < 0.2 ? b.subarray(0, Math.floor(next() * b.length)).toString('latin1') : b.toString('latin1');
}

async function outcome(f: () => Promise<unknown>, file: string): Promise<'read' | 'refused'> {
  try {
    await f();
    return 'read';
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(InputError);
    expect((e as Error).message).toContain(file);
    return 'refused';
  }
}

describe('mutated inputs are read or refused with a message, never anything else', () => {
  let manifestText = '';
  beforeAll(async () => {
    const data = join(tmp, 'q.jsonl');
    writeFileSync(data, '{"question":"Tom has 3 apples."}\n{"question":"Sara buys 12 eggs."}\n');
    const r = await runCli(['capture', '-m', modelPath('f32'), '--data', data, '-o', join(tmp, 'cap'), '--points', 'final_norm,resid_post', '--layers', '1', '--plain', '-q']);
    expect(r.code, r.stderr).toBe(0);
    manifestText = readFileSync(join(tmp, 'cap', 'manifest.json'), 'utf8');
  });

  test('capture manifest: 300 structural and 100 byte mutants', async () => {
    const doc = JSON.parse(manifestText);
    const next = rng(11);
    const seen = { read: 0, refused: 0 };
    for (let i = 0; i < 400; i++) {
      const dir = join(tmp, 'cap');
      writeFileSync(join(dir, 'manifest.json'), i < 300 ? JSON.stringify(mutate(doc, next)) : byteMutant(manifestText, next));
      seen[await outcome(() => readCaptureManifest(dir), join(dir, 'manifest.json'))]++;
    }
    writeFileSync(join(tmp, 'cap', 'manifest.json'), manifestText);
    expect(seen.refused).toBeGreaterThan(200);
  });

  test('oracle JSONL: 300 structural and 100 byte mutants', async () => {
    const line = {
      id: 'q1/0',
      task: 'answer_value',
      split: 'train',
      layer: 2,
      question: 'What is the final answer?',
      answer: '18',
      vectors: { file: 'capture/shard-00000.safetensors', key: '0/resid_post.2', rows: [3, 4] },
      source: { record: '0' },
    };
    const next = rng(12);
    const seen = { read: 0, refused: 0 };
    const file = join(tmp, 'examples.jsonl');
    for (let i = 0; i < 400; i++) {
      writeFileSync(file, (i < 300 ? JSON.stringify(mutate(line, next)) : byteMutant(JSON.stringify(line), next)) + '\n');
      seen[
        await outcome(async () => {
          for await (const _ of readOracleExamples(file));
        }, file)
      ]++;
    }
    expect(seen.read).toBeGreaterThan(10);
    expect(seen.refused).toBeGreaterThan(100);
  });
});
