// Splits by question: every example of a question (all its tasks, layers and extra runs) goes to
// the question's split, so no question's vectors are seen in two splits. Assignment depends only
// on the seed and the ids, not on file order.
import { InputError } from '../core/errors.js';
import { fnv1a } from '../core/random.js';

export const SPLITS = ['train', 'val', 'test'] as const;
export type Split = (typeof SPLITS)[number];

/** FNV-1a over UTF-16 units, then a murmur-style finaliser: stable across runs and platforms. */
export function hash32(s: string): number {
  let h = fnv1a(s);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A number in [0, 1) fixed by seed and key. */
export function unitHash(seed: number, key: string): number {
  return hash32(`${seed}\u0000${key}`) / 4294967296;
}

/** "0.8,0.1,0.1" -> [0.8, 0.1, 0.1]; the three must be >= 0 and sum to 1. */
export function parseSplitFractions(spec: string | readonly number[], what = '--split'): [number, number, number] {
  const parts = typeof spec === 'string' ? spec.split(',').map((s) => s.trim()) : spec.map(String);
  if (parts.length !== 3) throw new InputError(`${what}: expected three fractions train,val,test (e.g. 0.8,0.1,0.1), got "${String(spec)}"`);
  const f = parts.map(Number) as [number, number, number];
  if (f.some((x) => !Number.isFinite(x) || x < 0)) throw new InputError(`${what}: fractions must be numbers >= 0, got "${String(spec)}"`);
  const sum = f[0] + f[1] + f[2];
  if (Math.abs(sum - 1) > 1e-6) throw new InputError(`${what}: fractions must sum to 1, got ${sum}`);
  return f;
}

/**
 * Assigns each question id a split. Ids are ordered by a seeded hash and cut by the fractions
 * (largest remainders); a split with a positive fraction gets at least one question when there
 * are enough, so tiny runs still have something to evaluate.
 */
export function assignSplits(ids: readonly string[], fractions: readonly [number, number, number], seed: number): Map<string, Split> {
  const unique = [...new Set(ids)];
  const n = unique.length;
  const exact = fractions.map((f) => f * n);
  const counts = exact.map(Math.floor);
  const order = [0, 1, 2].sort((a, b) => exact[b] - counts[b] - (exact[a] - counts[a]) || a - b);
  for (let left = n - counts.reduce((a, b) => a + b, 0), i = 0; left > 0; left--, i++) counts[order[i % 3]]++;
  const positive = [0, 1, 2].filter((i) => fractions[i] > 0);
  if (n >= positive.length)
    for (const i of positive)
      if (counts[i] === 0) {
        const donor = [0, 1, 2].reduce((a, b) => (counts[b] > counts[a] ? b : a));
        counts[donor]--;
        counts[i]++;
      }
  const sorted = unique.map((id) => ({ id, h: hash32(`${seed}\u0000split\u0000${id}`) })).sort((a, b) => a.h - b.h || (a.id < b.id ? -1 : 1));
  const out = new Map<string, Split>();
  let at = 0;
  SPLITS.forEach((s, i) => {
    for (let j = 0; j < counts[i]; j++) out.set(sorted[at++].id, s);
  });
  return out;
}
