// Malformed GGUF files: loadModel must reject with an Error naming the problem, never crash.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadModel } from '../lib/index.js';
import { native } from '../lib/core/native.js';
import { buildGguf } from './helpers/gguf.js';
import { golden, modelPath, projectRoot } from './helpers/paths.js';
import { LatentHead } from '../lib/reasoning/latent-head.js';

const dir = mkdtempSync(join(tmpdir(), 'lro-gguf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

const f32Tensor = (over: Partial<{ name: string; ne: (number | bigint)[]; type: number; offset: number | bigint }> = {}) => ({
  name: 'token_embd.weight',
  ne: [32, 4],
  type: 0,
  offset: 0,
  ...over,
});

async function rejection(path: string): Promise<Error> {
  try {
    const m = await loadModel(path);
    m.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return e as Error;
  }
  throw new Error(`${path} loaded, expected a rejection`);
}

describe('malformed GGUF files', () => {
  const cases: [string, () => Uint8Array | string, RegExp][] = [
    ['missing file', () => join(dir, 'does-not-exist.gguf'), /cannot open|no such file/i],
    ['empty file', () => new Uint8Array(0), /magic|too short/],
    ['bad magic', () => buildGguf({ magic: 'GGUX' }), /magic/],
    ['not GGUF at all (text)', () => Buffer.from('hello, this is not a model\n'), /magic/],
    ['bad version', () => buildGguf({ version: 99 }), /version/],
    ['version 1', () => buildGguf({ version: 1 }), /version/],
    ['truncated header', () => buildGguf({}).subarray(0, 14), /truncated/],
    ['truncated model (first 1 MiB of tiny-l3.f32.gguf)', () => readFileSync(modelPath('f32')).subarray(0, 1 << 20), /truncated|beyond the end/],
    ['absurd dimensions', () => buildGguf({ tensors: [f32Tensor({ ne: [2n ** 62n, 2n ** 62n] })] }), /dimension/],
    ['zero dimension', () => buildGguf({ tensors: [f32Tensor({ ne: [32, 0] })] }), /dimension|ne\[1\]/],
    ['tensor offset beyond the file', () => buildGguf({ tensors: [f32Tensor({ offset: 1 << 30 })], dataBytes: 512 }), /offset/],
    ['tensor data running past the end', () => buildGguf({ tensors: [f32Tensor()], dataBytes: 100 }), /beyond the end|truncated/],
    ['unaligned tensor offset', () => buildGguf({ tensors: [f32Tensor({ offset: 3 })], dataBytes: 1024 }), /offset|align/],
    ['unknown tensor type id', () => buildGguf({ tensors: [f32Tensor({ type: 99 })], dataBytes: 1024 }), /type/],
    ['tensor count larger than the file', () => buildGguf({ tensorCountOverride: 1n << 40n }), /tensor_count|tensor/],
  ];
  test.each(cases)('%s', async (name, make, pattern) => {
    const made = make();
    const path = typeof made === 'string' ? made : file(name.replace(/\W+/g, '_') + '.gguf', made);
    const e = await rejection(path);
    expect(e.message).toMatch(pattern);
    expect(e.message.length).toBeGreaterThan(10);
  });

  test('string length beyond the file', async () => {
    const good = buildGguf({ kv: [['general.architecture', 'llama']] });
    // First key's u64 length sits right after magic, version, tensor count and kv count (24 bytes).
    const bad = Buffer.from(good);
    bad.writeBigUInt64LE(1n << 40n, 24);
    const e = await rejection(file('string-length.gguf', bad));
    expect(e.message).toMatch(/string length/);
  });

  test('array length beyond the file', async () => {
    const b = Buffer.from(buildGguf({ kv: [['tokenizer.ggml.tokens', 'x']] }));
    // Turn the string value into an array header claiming 2^40 u8 elements.
    const at = 24 + 8 + 'tokenizer.ggml.tokens'.length;
    b.writeUInt32LE(9, at); // ARRAY
    b.writeUInt32LE(0, at + 4); // of U8
    b.writeBigUInt64LE(1n << 40n, at + 8);
    const e = await rejection(file('array-length.gguf', b.subarray(0, at + 16)));
    expect(e.message).toMatch(/array length|truncated/);
  });

  test('valid structure but no tokenizer metadata names the missing key', async () => {
    const e = await rejection(file('no-tokenizer.gguf', buildGguf({ kv: [['general.architecture', 'llama']] })));
    expect(e.message).toMatch(/tokenizer\.ggml/);
  });

  test('a non-finite block scale or value is refused at load, naming the tensor', async () => {
    // q8_0: the f16 scale of block 3 of a matrix becomes NaN; f32: one norm weight becomes +inf.
    for (const [kind, type, patch] of [
      ['q8_0', 'q8_0', (b: Buffer, at: number) => b.writeUInt16LE(0x7e00, at + 3 * 34)],
      ['f32', 'f32', (b: Buffer, at: number) => b.writeFloatLE(Infinity, at + 4 * 5)],
    ] as const) {
      const src = modelPath(kind);
      const t = native().inspectGguf(src).tensors.find((x) => x.type === type && (type === 'f32' ? x.shape.length === 1 : x.shape.length === 2))!;
      const bytes = readFileSync(src);
      patch(bytes, t.fileOffset);
      const e = await rejection(file(`nonfinite-${kind}.gguf`, bytes));
      expect(e.message).toContain(`tensor '${t.name}' holds a non-finite ${type === 'f32' ? 'value (inf or NaN) at element 5' : 'block scale (inf or NaN) in the block at element 96'}`);
    }
  });

  test('fuzz regression: a q8_0 latent head with a NaN block scale is refused, naming the tensor', async () => {
    // The reproducer of the act32 overflow the first fuzzing run found (native/fuzz/regressions).
    const m = await loadModel(modelPath('f32'));
    try {
      expect(() => LatentHead.find(m, join(projectRoot, 'native/fuzz/regressions/gguf/latent-head-q8_0-nan-scale.gguf'))).toThrow(
        /tensor 'latent\.fc1\.weight' holds a non-finite block scale \(inf or NaN\) in the block at element 0/,
      );
    } finally {
      m.dispose();
    }
  });

  test('a directory is not a model', async () => {
    const e = await rejection(dir);
    expect(e.message).toMatch(/regular file|directory|cannot/i);
  });

  // Random damage to a real vocab file: any outcome but a crash is acceptable.
  test('random byte damage and truncation never crash the process', async () => {
    const base = readFileSync(golden('tokenizer', 'ggml-vocab-llama-spm.gguf'));
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    let rejected = 0;
    let loaded = 0;
    for (let i = 0; i < 60; i++) {
      let b: Buffer;
      if (i % 3 === 0) b = base.subarray(0, Math.floor(rand() * base.length));
      else {
        b = Buffer.from(base);
        // Bias damage towards the header and the start of the metadata, where the structure is.
        const span = i % 3 === 1 ? 4096 : b.length;
        for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) b[Math.floor(rand() * span)] = Math.floor(rand() * 256);
      }
      const p = file(`fuzz-${i}.gguf`, b);
      try {
        const m = await loadModel(p, { vocabOnly: true });
        m.tokenize('Hello world, 12 apples.', { addBos: true });
        m.dispose();
        loaded++;
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        rejected++;
      }
      rmSync(p);
    }
    expect(loaded + rejected).toBe(60);
  });
});

// LRO_WEIGHT_MEMORY picks how a file's bytes are held (see GgufMemory in native/core/gguf.h). The
// native side reads the real environment: this file runs in its own process (vitest forks).
describe('weight memory (LRO_WEIGHT_MEMORY)', () => {
  async function withWeightMemory<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
    const before = process.env.LRO_WEIGHT_MEMORY;
    if (value === undefined) delete process.env.LRO_WEIGHT_MEMORY;
    else process.env.LRO_WEIGHT_MEMORY = value;
    try {
      return await fn();
    } finally {
      if (before === undefined) delete process.env.LRO_WEIGHT_MEMORY;
      else process.env.LRO_WEIGHT_MEMORY = before;
    }
  }
  async function lastLogits(value: string | undefined): Promise<{ memory: string; logits: Float32Array }> {
    return withWeightMemory(value, async () => {
      const m = await loadModel(modelPath('f16'));
      try {
        const s = m.createSession({ threads: 1 });
        const out = await s.eval({ tokens: [1, 450, 1996, 1354], outputRows: 'last' });
        return { memory: m.info.weightMemory, logits: Float32Array.from(out.logits!) };
      } finally {
        m.dispose();
      }
    });
  }

  test('a small file is mapped by default; copy and mapped hold it as asked, with the same logits', async () => {
    const auto = await lastLogits(undefined);
    const copy = await lastLogits('copy');
    const mapped = await lastLogits('mapped');
    expect([auto.memory, copy.memory, mapped.memory]).toEqual(['mapped', 'copy', 'mapped']);
    expect(copy.logits.length).toBeGreaterThan(1000);
    expect(copy.logits).toEqual(mapped.logits);
    expect(auto.logits).toEqual(mapped.logits);
  });

  test('an unknown value is refused, naming the variable and the choices', async () => {
    const e = await withWeightMemory('hugepages', () => rejection(modelPath('f32')));
    expect(e.message).toMatch(/LRO_WEIGHT_MEMORY.*auto, mapped or copy.*"hugepages"/);
  });

  test('malformed files are refused the same way when copied', async () => {
    const truncated = file('copy-truncated.gguf', readFileSync(modelPath('f32')).subarray(0, 1 << 20));
    const past = file('copy-past-end.gguf', buildGguf({ tensors: [f32Tensor()], dataBytes: 100 }));
    const [a, b] = await withWeightMemory('copy', async () => [await rejection(truncated), await rejection(past)]);
    expect(a.message).toMatch(/truncated|beyond the end/);
    expect(b.message).toMatch(/beyond the end|truncated/);
  });
});
