// Dequantisation (README §5.5): native dequantize() of GGUF rows vs ggml's to_float, bit for bit.
import { describe, expect, test } from 'vitest';
import { native } from '../lib/index.js';
import { GGML_TYPES, readGgufTable, rowBytes } from './helpers/gguf.js';
import { golden, modelPath } from './helpers/paths.js';
import { f32, i32, readSt } from './helpers/safetensors.js';

const TYPES = ['f16', 'bf16', 'q8_0', 'q4_0', 'q4_k_m', 'q6_k'] as const;

describe('dequantisation goldens', () => {
  test.each(TYPES)('%s: rows 0, 1 and last of every non-f32 tensor, exact', (type) => {
    const g = readSt(golden('llamacpp', `tiny-l3.${type}.dequant.safetensors`));
    const ggmlTypes = JSON.parse(g.metadata.ggml_types) as Record<string, string>;
    const table = readGgufTable(modelPath(type));
    let rows = 0;
    const bad: string[] = [];
    for (const [name, typeName] of Object.entries(ggmlTypes)) {
      const t = table.tensors.get(name);
      expect(t, name).toBeDefined();
      expect(GGML_TYPES[t!.type].name).toBe(typeName);
      const ne0 = t!.ne[0];
      const rb = rowBytes(t!.type, ne0);
      const want = f32(g, name);
      const idx = i32(g, `${name}.rows`);
      expect(idx).toEqual([0, 1, t!.ne[1] - 1]);
      idx.forEach((r, k) => {
        const bytes = new Uint8Array(table.bytes.buffer, table.bytes.byteOffset + t!.start + r * rb, rb);
        const got = native().dequantize(typeName, bytes, ne0);
        const w = want.subarray(k * ne0, (k + 1) * ne0);
        // Compare bit patterns: exact, and -0 / NaN are not glossed over.
        const gu = new Uint32Array(got.buffer, got.byteOffset, ne0);
        const wu = new Uint32Array(w.buffer, w.byteOffset, ne0);
        let diff = 0;
        for (let i = 0; i < ne0; i++) if (gu[i] !== wu[i]) diff++;
        if (diff) bad.push(`${name} row ${r}: ${diff}/${ne0} values differ (e.g. got ${got[gu.findIndex((x, i) => x !== wu[i])]})`);
        rows++;
      });
    }
    console.log(`dequant ${type}: ${rows - bad.length}/${rows} rows bit-exact`);
    expect(bad).toEqual([]);
  });
});
