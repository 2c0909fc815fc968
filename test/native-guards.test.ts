// Every N-API entry checks its arguments: a JS value of the wrong type, range or shape is refused
// with an Error (TypeError or RangeError where the binding says which), never a crash or a silent
// out-of-bounds read. Each entry gets the same hostile argument lists; a crash fails the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { native, type NativeModel } from '../lib/core/native.js';
import { golden, modelPath } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-guards-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Strings are paths inside tmp: an entry that writes a file at a string argument writes it there.
const HOSTILE: unknown[] = [undefined, null, NaN, -1, 2 ** 53, 1e300, -1e300, 0.5, '', join(tmp, 'x'), join(tmp, '1'), [], [1, 2], {}, { length: 1e9 },
  new Float32Array(0), new Float32Array(3), new Int32Array(4), new Uint8Array(5), true, () => 0, Symbol('s'), 10n];

/** Native objects of the wrong class, passed where another is expected (type confusion). */
const WRAPPED: unknown[] = [];

/** Calls f with every hostile value at every position (others: the given good values); collects non-Error outcomes. */
async function probe(name: string, f: (...a: unknown[]) => unknown, good: unknown[]): Promise<string[]> {
  const odd: string[] = [];
  for (let i = 0; i < Math.max(1, good.length); i++)
    for (const h of [...HOSTILE, ...WRAPPED]) {
      const args = [...good];
      args[i] = h;
      try {
        const r = f(...args);
        if (r instanceof Promise) await r.catch((e) => { if (!(e instanceof Error)) odd.push(`${name} arg ${i} = ${String(h)}: rejected with a non-Error`); });
      } catch (e) {
        if (!(e instanceof Error)) odd.push(`${name} arg ${i} = ${String(h)}: threw a non-Error`);
      }
    }
  return odd;
}

describe('native entries refuse hostile arguments with an Error', () => {
  let model: NativeModel;
  beforeAll(async () => {
    model = await native().loadModel(modelPath('f32'), false);
    const n = native();
    WRAPPED.push(model, new n.NativeSession(model, { nCtx: 8, threads: 1 } as never), n.loadAdapter(model, golden('gguf', 'tiny-l3.lora-r8.f32.gguf')), new (n as unknown as { NativeAdapter: new () => unknown }).NativeAdapter());
  });
  afterAll(() => model?.dispose());

  test('typed arrays of another element type and objects of another class are refused by name', async () => {
    const n = native();
    expect(() => n.meanRows(new Int32Array(4) as unknown as Float32Array, 2)).toThrow('meanRows: x must be a Float32Array');
    const s = new n.NativeSession(model, { nCtx: 8, threads: 1 } as never);
    try {
      expect(() => s.setAdapters([{ adapter: model as never, scale: 1 }])).toThrow('setAdapters: adapters[0].adapter must be a NativeAdapter');
      expect(() => new n.NativeSession(s as never, { nCtx: 8, threads: 1 } as never)).toThrow('new NativeSession: model must be a NativeModel');
      const bare = new (n as unknown as { NativeAdapter: new () => never }).NativeAdapter();
      expect(() => s.setAdapters([{ adapter: bare, scale: 1 }])).toThrow(/holds no adapter/);
      expect(() => (bare as { info(): unknown }).info()).toThrow(/no adapter/);
      expect(() => s.eval({ tokens: new Float32Array([1]) as never, pos: new Int32Array([0]), seq: new Int32Array([0]), outputRows: new Int32Array([0]), logits: true } as never)).toThrow(
        'eval: tokens must be an Int32Array',
      );
      const one = { tokens: new Int32Array([1]), pos: new Int32Array([0]), seq: new Int32Array([0]), outputRows: new Int32Array([0]), logits: true };
      expect(() => s.eval({ ...one, recycle: new Float32Array(2) } as never)).toThrow('eval: recycle: expected an array of Float32Arrays');
      expect(() => s.eval({ ...one, recycle: [new Float32Array(2), [1]] } as never)).toThrow('eval: recycle[1]: expected a Float32Array');
    } finally {
      s.dispose();
    }
    expect(() => n.sampleToken(new Float32Array(4), 0, 4, { temperature: 0, topK: 0, topP: 1, seed: -1, step: 0 })).toThrow(/sampleToken: options\.seed must be an integer in \[0, /);
  });

  test('machineLimits measures positive, finite ceilings on the threads asked for', () => {
    const n = native();
    const one = n.machineLimits(1, 8);
    expect(one.threads).toBe(1);
    for (const v of [one.triadGBps, one.fmaGflops]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    // Some FLOP/s a core must do with the widest FMA the dispatch has (scalar CPUs included): 0.5 GFLOP/s is far below any.
    expect(one.fmaGflops).toBeGreaterThan(0.5);
    // The dot-product peaks are 0 or finite and positive; an int8 peak exists wherever SIMD kernels run.
    for (const v of [one.int8Gops, one.bf16Gflops]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThanOrEqual(0);
    }
    if (n.cpuFeatures() !== 'scalar') expect(one.int8Gops).toBeGreaterThan(0.5);
    if (n.cpuFeatures().includes('bf16')) expect(one.bf16Gflops).toBeGreaterThan(0.5);
    expect(n.machineLimits(0, 8).threads).toBe(n.physicalCores());
  });

  test('free functions', async () => {
    const n = native();
    const logits = new Float32Array(2003);
    const odd = [
      ...(await probe('quantize', (...a) => n.quantize(...(a as Parameters<typeof n.quantize>)), ['q8_0', new Float32Array(64), 32])),
      ...(await probe('dequantize', (...a) => n.dequantize(...(a as Parameters<typeof n.dequantize>)), ['q8_0', new Uint8Array(68), 64])),
      ...(await probe('sampleToken', (...a) => n.sampleToken(...(a as Parameters<typeof n.sampleToken>)), [logits, 0, 2003, { temperature: 0, topK: 0, topP: 1, seed: 0, step: 0 }])),
      ...(await probe('logitStats', (...a) => n.logitStats(...(a as Parameters<typeof n.logitStats>)), [logits, 0, 2003, 2003, 5])),
      ...(await probe('vectorStats', (...a) => n.vectorStats(...(a as Parameters<typeof n.vectorStats>)), [new Float32Array(8), null])),
      ...(await probe('addScaledNoise', (...a) => n.addScaledNoise(...(a as Parameters<typeof n.addScaledNoise>)), [new Float32Array(8), 1, 0])),
      ...(await probe('meanRows', (...a) => n.meanRows(...(a as Parameters<typeof n.meanRows>)), [new Float32Array(8), 4])),
      ...(await probe('ridgeClassify', (...a) => n.ridgeClassify(...(a as Parameters<typeof n.ridgeClassify>)), [new Float32Array(8), new Int32Array(2), new Float32Array(4), 4, 2, 0.1])),
      ...(await probe('machineLimits', (...a) => n.machineLimits(...(a as Parameters<typeof n.machineLimits>)), [1, 1])),
      ...(await probe('inspectGguf', (...a) => n.inspectGguf(...(a as Parameters<typeof n.inspectGguf>)), [modelPath('f32'), 16])),
      ...(await probe('loadModel', (...a) => n.loadModel(...(a as Parameters<typeof n.loadModel>)), [modelPath('f32'), true])),
      ...(await probe('writeGguf', (...a) => n.writeGguf(...(a as Parameters<typeof n.writeGguf>)), [join(tmp, 'w.gguf'), [{ key: 'a', type: 'u32', value: 1 }], []])),
      ...(await probe('writeRandomLlama', (...a) => n.writeRandomLlama(...(a as Parameters<typeof n.writeRandomLlama>)), [join(tmp, 'r.gguf'), { nEmbd: 32, nLayer: 1, nHead: 2, nHeadKv: 2, nFf: 64 }])),
      ...(await probe('loadAdapter', (...a) => n.loadAdapter(...(a as Parameters<typeof n.loadAdapter>)), [model, modelPath('f32')])),
    ];
    expect(odd).toEqual([]);
  });

  test('model and session methods', async () => {
    const n = native();
    const s = new n.NativeSession(model, { nCtx: 64, threads: 1, kvType: 'f32' } as never);
    try {
      const odd = [
        ...(await probe('model.tokenize', (...a) => (model.tokenize as (...x: unknown[]) => unknown)(...a), ['hi', true, false])),
        ...(await probe('model.detokenize', (...a) => (model.detokenize as (...x: unknown[]) => unknown)(...a), [new Int32Array([1, 2]), false])),
        ...(await probe('model.tokenText', (...a) => (model.tokenText as (...x: unknown[]) => unknown)(...a), [1])),
        ...(await probe('model.isEog', (...a) => (model.isEog as (...x: unknown[]) => unknown)(...a), [1])),
        ...(await probe('model.metadata', (...a) => (model.metadata as (...x: unknown[]) => unknown)(...a), [8])),
        ...(await probe('new NativeSession', (...a) => new (n.NativeSession as unknown as new (...x: unknown[]) => unknown)(...a), [model, { nCtx: 16, threads: 1 }])),
        ...(await probe('session.seqCopy', (...a) => (s.seqCopy as (...x: unknown[]) => unknown)(...a), [0, 1, 0, -1])),
        ...(await probe('session.seqRemove', (...a) => (s.seqRemove as (...x: unknown[]) => unknown)(...a), [0, 0, -1])),
        ...(await probe('session.seqPosMax', (...a) => (s.seqPosMax as (...x: unknown[]) => unknown)(...a), [0])),
        ...(await probe('session.setAdapters', (...a) => (s.setAdapters as (...x: unknown[]) => unknown)(...a), [[]])),
        ...(await probe('session.eval', (...a) => (s.eval as (...x: unknown[]) => unknown)(...a), [{ tokens: new Int32Array([1]), pos: new Int32Array([0]), seq: new Int32Array([0]), outputRows: new Int32Array([0]), logits: true }])),
      ];
      expect(odd).toEqual([]);
      // After all that, the session still computes.
      s.seqRemove(0, 0, -1);
      const r = await s.eval({ tokens: new Int32Array([1, 2]), pos: new Int32Array([0, 1]), seq: new Int32Array([0, 0]), outputRows: new Int32Array([1]), logits: true } as never);
      expect(r.logits!.length).toBe(2003);
    } finally {
      s.dispose();
    }
  });
});
