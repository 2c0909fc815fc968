// lib/core/safetensors.ts against the test's independent reader and the golden files.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { readSafetensors, readSafetensorsHeader, readSafetensorsTensor, writeSafetensors } from '../lib/index.js';
import { golden } from './helpers/paths.js';
import { readSt } from './helpers/safetensors.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-st-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('safetensors', () => {
  test('write then read with both readers; header padded to 8 bytes; no temp file left', async () => {
    const p = join(tmp, 'a.safetensors');
    const f = new Float32Array([1, -2.5, 3e-8, 4, 5, 6]);
    const i = new Int32Array([7, -8, 9]);
    const size = await writeSafetensors(
      p,
      [
        { name: 'x/logits', dtype: 'F32', shape: [2, 3], data: new Uint8Array(f.buffer) },
        { name: 'ids', dtype: 'I32', shape: [3], data: new Uint8Array(i.buffer) },
        { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) },
      ],
      { format: 'test', note: 'ünïcode' },
    );
    expect(readdirSync(tmp)).toEqual(['a.safetensors']);
    const mine = readSt(p);
    expect(mine.metadata).toEqual({ format: 'test', note: 'ünïcode' });
    expect(Array.from(new Float32Array(mine.tensors.get('x/logits')!.bytes.buffer))).toEqual(Array.from(f));
    expect(mine.tensors.get('ids')!.shape).toEqual([3]);
    const h = await readSafetensorsHeader(p);
    expect(h.dataStart % 8).toBe(0);
    expect(size).toBe(h.dataStart + 24 + 12);
    const lib = await readSafetensors(p);
    expect(Array.from(new Int32Array(lib.tensors.get('ids')!.data.buffer))).toEqual([7, -8, 9]);
    const one = await readSafetensorsTensor(p, 'x/logits');
    expect(one.shape).toEqual([2, 3]);
  });

  test('reads a golden file like the test reader does', async () => {
    const p = golden('llamacpp', 'tiny-l3.f32.p12.safetensors');
    const lib = await readSafetensors(p);
    const ref = readSt(p);
    expect(lib.metadata).toEqual(ref.metadata);
    expect([...lib.tensors.keys()].sort()).toEqual([...ref.tensors.keys()].sort());
    for (const [k, t] of ref.tensors) expect(Buffer.compare(Buffer.from(lib.tensors.get(k)!.data), Buffer.from(t.bytes))).toBe(0);
  });

  test('refuses malformed files with a message naming the problem', async () => {
    const p = join(tmp, 'bad.safetensors');
    writeFileSync(p, Buffer.from([1, 2, 3]));
    await expect(readSafetensorsHeader(p)).rejects.toThrow(/too short/);
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    writeFileSync(p, b);
    await expect(readSafetensorsHeader(p)).rejects.toThrow(/header length 1000 runs past the end/);
    const json = Buffer.from(JSON.stringify({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }));
    const c = Buffer.alloc(8);
    c.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(p, Buffer.concat([c, json, Buffer.alloc(8)]));
    await expect(readSafetensorsHeader(p)).rejects.toThrow(/"t".*beyond the 8-byte data buffer/);
    await expect(writeSafetensors(p, [{ name: 't', dtype: 'F32', shape: [3], data: new Uint8Array(8) }])).rejects.toThrow(/8 bytes, expected 12/);
  });
});
