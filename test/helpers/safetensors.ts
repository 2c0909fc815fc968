// An independent safetensors reader written from the format description (not lib/core/safetensors.ts),
// so the goldens and the capture output are read by code the engine's own writer does not share:
// u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, __metadata__},
// then the data buffer; offsets are relative to the buffer and must cover it without holes.
import { readFileSync } from 'node:fs';

export interface StTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array; // own, 8-byte aligned copy
}

export interface StFile {
  metadata: Record<string, string>;
  tensors: Map<string, StTensor>;
}

const SIZES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export function readSt(path: string): StFile {
  const buf = readFileSync(path);
  if (buf.length < 8) throw new Error(`${path}: too short`);
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new Error(`${path}: header length ${n} beyond the file`);
  const header = JSON.parse(buf.toString('utf8', 8, 8 + n)) as Record<string, unknown>;
  const start = 8 + n;
  const dataLen = buf.length - start;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors = new Map<string, StTensor>();
  const spans: [number, number][] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const [b, e] = data_offsets;
    const elems = shape.reduce((a, x) => a * x, 1);
    if (!(dtype in SIZES)) throw new Error(`${path}: ${name}: dtype ${dtype}`);
    if (e - b !== elems * SIZES[dtype]) throw new Error(`${path}: ${name}: ${e - b} bytes for ${dtype} ${JSON.stringify(shape)}`);
    if (e > dataLen) throw new Error(`${path}: ${name}: past the end`);
    spans.push([b, e]);
    const bytes = new Uint8Array(new ArrayBuffer(e - b));
    bytes.set(buf.subarray(start + b, start + e));
    tensors.set(name, { dtype, shape, bytes });
  }
  spans.sort((x, y) => x[0] - y[0]);
  let at = 0;
  for (const [b, e] of spans) {
    if (b !== at) throw new Error(`${path}: data buffer has a hole or overlap at ${at}`);
    at = e;
  }
  if (at !== dataLen) throw new Error(`${path}: ${dataLen - at} bytes after the last tensor`);
  return { metadata, tensors };
}

function get(f: StFile, name: string, dtype: string): StTensor {
  const t = f.tensors.get(name);
  if (!t) throw new Error(`no tensor ${name}`);
  if (t.dtype !== dtype) throw new Error(`${name} is ${t.dtype}, not ${dtype}`);
  return t;
}

export function f32(f: StFile, name: string): Float32Array {
  const t = get(f, name, 'F32');
  return new Float32Array(t.bytes.buffer, 0, t.bytes.length / 4);
}

export function i32(f: StFile, name: string): number[] {
  const t = get(f, name, 'I32');
  return Array.from(new Int32Array(t.bytes.buffer, 0, t.bytes.length / 4));
}

/** IEEE half -> float (exact; every half is a float). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Decodes an F16 or BF16 tensor to float32 values. */
export function wideToF32(t: StTensor): Float32Array {
  const u16 = new Uint16Array(t.bytes.buffer, 0, t.bytes.length / 2);
  const out = new Float32Array(u16.length);
  if (t.dtype === 'F16') for (let i = 0; i < u16.length; i++) out[i] = halfToFloat(u16[i]);
  else if (t.dtype === 'BF16') {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
  } else throw new Error(`not a 16-bit float tensor: ${t.dtype}`);
  return out;
}

/** I64 tensor as numbers (the HF goldens store ids as int64). */
export function i64(f: StFile, name: string): number[] {
  const t = get(f, name, 'I64');
  return Array.from(new BigInt64Array(t.bytes.buffer, 0, t.bytes.length / 8), (x) => Number(x));
}
