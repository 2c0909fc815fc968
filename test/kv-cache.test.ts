// KV-cache behaviour: batched sequences, forks, cancellation.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadModel, type Model } from '../lib/index.js';
import { fmt, maxAbsDiff } from './helpers/compare.js';
import { golden, modelPath } from './helpers/paths.js';
import { i32, readSt } from './helpers/safetensors.js';

const V = 2003;
// Same arithmetic in a different batch layout; f32 rounding may differ in the last bits only.
const ATOL = 1e-3;

let model: Model;
let p12: number[];
let p40: number[];
let p75: number[];
const measured: string[] = [];

beforeAll(async () => {
  model = await loadModel(modelPath('f32'));
  p12 = i32(readSt(golden('llamacpp', 'tiny-l3.f32.p12.safetensors')), 'tokens');
  p40 = i32(readSt(golden('llamacpp', 'tiny-l3.f32.p40.safetensors')), 'tokens');
  p75 = i32(readSt(golden('llamacpp', 'tiny-l3.f32.p75.safetensors')), 'tokens');
});
afterAll(() => {
  model?.dispose();
  if (measured.length) console.log(['kv-cache max |diff| of logits', ...measured].join('\n'));
});

async function alone(tokens: number[]): Promise<Float32Array> {
  const s = model.createSession({ nCtx: 256 });
  try {
    return (await s.eval({ tokens, outputRows: 'all' })).logits!;
  } finally {
    s.dispose();
  }
}

const rows = (a: Float32Array, from: number, to: number) => a.subarray(from * V, to * V);

describe('KV cache', () => {
  test('a batch of two sequences equals each run alone', async () => {
    const a = p12;
    const b = p40.slice(0, 20);
    const s = model.createSession({ nCtx: 256 });
    try {
      const out = await s.eval({ tokens: [...a, ...b], seqIds: [...a.map(() => 0), ...b.map(() => 1)], outputRows: 'all' });
      expect(s.posMax(0)).toBe(a.length - 1);
      expect(s.posMax(1)).toBe(b.length - 1);
      const da = maxAbsDiff(rows(out.logits!, 0, a.length), await alone(a));
      const db = maxAbsDiff(rows(out.logits!, a.length, a.length + b.length), await alone(b));
      measured.push(`two sequences in one batch vs alone: ${fmt(da)}, ${fmt(db)}`);
      expect(da).toBeLessThanOrEqual(ATOL);
      expect(db).toBeLessThanOrEqual(ATOL);
    } finally {
      s.dispose();
    }
  });

  test('interleaved rows of two sequences equal each run alone', async () => {
    const a = p12.slice(0, 10);
    const b = p75.slice(0, 10);
    const tokens: number[] = [];
    const seqIds: number[] = [];
    for (let i = 0; i < 10; i++) tokens.push(a[i], b[i]), seqIds.push(0, 1);
    const s = model.createSession({ nCtx: 256 });
    try {
      const out = await s.eval({ tokens, seqIds, outputRows: 'all' });
      const ga = new Float32Array(10 * V);
      const gb = new Float32Array(10 * V);
      for (let i = 0; i < 10; i++) {
        ga.set(rows(out.logits!, 2 * i, 2 * i + 1), i * V);
        gb.set(rows(out.logits!, 2 * i + 1, 2 * i + 2), i * V);
      }
      const da = maxAbsDiff(ga, await alone(a));
      const db = maxAbsDiff(gb, await alone(b));
      measured.push(`interleaved batch vs alone: ${fmt(da)}, ${fmt(db)}`);
      expect(da).toBeLessThanOrEqual(ATOL);
      expect(db).toBeLessThanOrEqual(ATOL);
    } finally {
      s.dispose();
    }
  });

  test('fork of a prefix, then continuing, equals a fresh run; the source is unaffected', async () => {
    const s = model.createSession({ nCtx: 256 });
    try {
      await s.eval({ tokens: p40.slice(0, 20) });
      s.fork(0, 1);
      expect(s.posMax(1)).toBe(19);
      // seq 1 continues with the rest of p40; seq 0 with other tokens.
      const c1 = await s.eval({ tokens: p40.slice(20), seqIds: p40.slice(20).map(() => 1), outputRows: 'all' });
      const c0 = await s.eval({ tokens: p12.slice(1), outputRows: 'all' });
      const fresh1 = rows(await alone(p40), 20, 40);
      const fresh0 = rows(await alone([...p40.slice(0, 20), ...p12.slice(1)]), 20, 20 + p12.length - 1);
      const d1 = maxAbsDiff(c1.logits!, fresh1);
      const d0 = maxAbsDiff(c0.logits!, fresh0);

      // Partial fork: positions [0, 10) only, then re-decode 10..19 differently.
      s.fork(0, 2, 0, 10);
      expect(s.posMax(2)).toBe(9);
      const c2 = await s.eval({ tokens: p75.slice(10, 20), seqIds: new Array(10).fill(2), outputRows: 'all' });
      const fresh2 = rows(await alone([...p40.slice(0, 10), ...p75.slice(10, 20)]), 10, 20);
      const d2 = maxAbsDiff(c2.logits!, fresh2);
      measured.push(`fork then continue vs fresh: ${fmt(d1)} (fork), ${fmt(d0)} (source), ${fmt(d2)} (partial fork)`);
      expect(d1).toBeLessThanOrEqual(ATOL);
      expect(d0).toBeLessThanOrEqual(ATOL);
      expect(d2).toBeLessThanOrEqual(ATOL);

      // Removing a tail and re-decoding it gives the same logits again.
      s.remove(1, 30);
      expect(s.posMax(1)).toBe(29);
      const again = await s.eval({ tokens: p40.slice(30), seqIds: new Array(10).fill(1), outputRows: 'all' });
      expect(maxAbsDiff(again.logits!, rows(c1.logits!, 10, 20))).toBeLessThanOrEqual(ATOL);
    } finally {
      s.dispose();
    }
  });

  test('cancel via AbortSignal rejects with AbortError; the session still works', async () => {
    const s = model.createSession({ nCtx: 4096 });
    try {
      const before = (await s.eval({ tokens: p12, outputRows: 'all' })).logits!;
      s.remove(0);
      const long = Array.from({ length: 2048 }, (_, i) => p75[i % p75.length]);
      const ac = new AbortController();
      const pending = s.eval({ tokens: long, outputRows: 'all', signal: ac.signal });
      ac.abort();
      await expect(pending).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
      // The cancelled batch left nothing in the cache.
      expect(s.posMax(0)).toBe(-1);

      // An already-aborted signal rejects before any work.
      await expect(s.eval({ tokens: p12, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });

      const after = (await s.eval({ tokens: p12, outputRows: 'all' })).logits!;
      expect(maxAbsDiff(after, before)).toBe(0);
    } finally {
      s.dispose();
    }
  });

  test('concurrency: two sessions at once, a second eval on a busy session, dispose mid-eval', async () => {
    const a = model.createSession({ nCtx: 512 });
    const b = model.createSession({ nCtx: 512 });
    try {
      const wantA = await alone(p40);
      const wantB = await alone(p75);
      // Two sessions of one model evaluating at the same time: the same logits as alone.
      const [ra, rb] = await Promise.all([a.eval({ tokens: p40, outputRows: 'all' }), b.eval({ tokens: p75, outputRows: 'all' })]);
      expect(maxAbsDiff(ra.logits!, wantA)).toBe(0);
      expect(maxAbsDiff(rb.logits!, wantB)).toBe(0);
      a.remove(0);
      // One session, two evals without awaiting: the second is refused, the first finishes.
      const first = a.eval({ tokens: p40, outputRows: 'all' });
      await expect(a.eval({ tokens: p12 })).rejects.toThrow(/session is busy with an eval; await it \(or cancel it\) first/);
      expect(maxAbsDiff((await first).logits!, wantA)).toBe(0);
    } finally {
      a.dispose();
      b.dispose();
    }
    // dispose while an eval is in flight: the eval settles (cancelled), the session is gone, nothing crashes.
    const c = model.createSession({ nCtx: 4096 });
    const long = Array.from({ length: 2048 }, (_, i) => p75[i % p75.length]);
    const pending = c.eval({ tokens: long, outputRows: 'all' });
    c.dispose();
    await pending.then(
      (r) => expect(r.logits!.length).toBe(2048 * V),
      (e) => expect(String(e)).toMatch(/cancel|abort/i),
    );
    await expect(c.eval({ tokens: p12 })).rejects.toThrow(/session has been disposed/);
  });

  test('disposing the model while a session evaluates: the eval finishes, new sessions are refused', async () => {
    const m = await loadModel(modelPath('f32'));
    const s = m.createSession({ nCtx: 512 });
    const pending = s.eval({ tokens: p75, outputRows: 'all' });
    m.dispose();
    const r = await pending;
    expect(maxAbsDiff(r.logits!, await alone(p75))).toBe(0);
    // The session keeps the weights it needs until it goes.
    const again = await s.eval({ tokens: p12 });
    expect(again.logits!.length).toBe(V);
    s.dispose();
    expect(() => m.createSession({ nCtx: 16 })).toThrow(/model has been disposed/);
  });

  test('bad batches are refused without changing the cache', async () => {
    const s = model.createSession({ nCtx: 16 });
    try {
      await s.eval({ tokens: p12.slice(0, 5) });
      await expect(s.eval({ tokens: [1, 2], positions: [3, 4] })).rejects.toThrow(/position/);
      await expect(s.eval({ tokens: [V + 5] })).rejects.toThrow(/vocabulary/);
      await expect(s.eval({ tokens: p75.slice(0, 20) })).rejects.toThrow(/n_ctx|context/);
      expect(s.posMax(0)).toBe(4);
    } finally {
      s.dispose();
    }
  });

  test('result buffers are reused only once JS has collected them: a held result never changes, a reused one is exact', async () => {
    // 40 rows of logits (320 KB) are large enough for the native buffer pool.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const s = model.createSession({ nCtx: 64 });
    try {
      const held = (await s.eval({ tokens: p40, outputRows: 'all' })).logits!;
      const copy = Float32Array.from(held);
      for (let i = 0; i < 12; i++) {
        s.remove(0);
        const r = (await s.eval({ tokens: p40, outputRows: 'all', capture: i % 2 ? ['resid_post.0'] : undefined })).logits!;
        expect(maxAbsDiff(r, copy)).toBe(0);
        gc();
        await new Promise((resolve) => setImmediate(resolve));  // finalizers of the collected buffers
      }
      expect(maxAbsDiff(held, copy)).toBe(0);
    } finally {
      s.dispose();
    }
  });

  test('recycle: the earlier output is emptied and its memory holds the new one, exactly; foreign arrays are left alone', async () => {
    const s = model.createSession({ nCtx: 64 });
    try {
      const first = await s.eval({ tokens: p40, outputRows: 'all', capture: ['resid_post.0'] });
      const logits = Float32Array.from(first.logits!);
      const view = first.logits!.subarray(V, 2 * V);
      const mine = new Float32Array(8).fill(3);
      s.remove(0);
      const second = await s.eval({ tokens: p40, outputRows: 'all', recycle: first });
      expect(first.logits!.length).toBe(0); // detached, and every view with it
      expect(view.length).toBe(0);
      expect(first.captures['resid_post.0'].length).toBe(0);
      expect(maxAbsDiff(second.logits!, logits)).toBe(0);
      s.remove(0);
      const third = await s.eval({ tokens: p40, outputRows: 'all', recycle: { rows: [], logits: mine, captures: {} } });
      expect(Array.from(mine)).toEqual(new Array(8).fill(3));
      expect(maxAbsDiff(third.logits!, logits)).toBe(0);
      s.remove(0);
      // An output recycled twice: the second time its (empty) arrays are skipped.
      const fourth = await s.eval({ tokens: p40, outputRows: 'all', recycle: first });
      expect(maxAbsDiff(fourth.logits!, logits)).toBe(0);
      await expect(s.eval({ tokens: [1], recycle: { rows: [], captures: { x: [1, 2] as unknown as Float32Array } } })).resolves.toBeDefined();
    } finally {
      s.dispose();
    }
  });
});
