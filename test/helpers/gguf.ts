// A small GGUF reader (tensor table only) and a raw byte builder for malformed files, independent
// of the native parser so the tests do not check the engine against itself.
import { readFileSync } from 'node:fs';

export const GGML_TYPES: Record<number, { name: string; blockSize: number; blockBytes: number }> = {
  0: { name: 'f32', blockSize: 1, blockBytes: 4 },
  1: { name: 'f16', blockSize: 1, blockBytes: 2 },
  2: { name: 'q4_0', blockSize: 32, blockBytes: 18 },
  8: { name: 'q8_0', blockSize: 32, blockBytes: 34 },
  12: { name: 'q4_K', blockSize: 256, blockBytes: 144 },
  14: { name: 'q6_K', blockSize: 256, blockBytes: 210 },
  30: { name: 'bf16', blockSize: 1, blockBytes: 2 },
};

export interface GgufTensorRef {
  name: string;
  ne: number[];
  type: number;
  /** absolute file offset of the data */
  start: number;
}

export interface GgufTable {
  version: number;
  alignment: number;
  tensors: Map<string, GgufTensorRef>;
  bytes: Buffer;
}

const SCALAR: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function readGgufTable(path: string): GgufTable {
  const b = readFileSync(path);
  let p = 0;
  const u32 = () => {
    const v = b.readUInt32LE(p);
    p += 4;
    return v;
  };
  const u64 = () => {
    const v = Number(b.readBigUInt64LE(p));
    p += 8;
    return v;
  };
  const str = () => {
    const n = u64();
    const s = b.toString('utf8', p, p + n);
    p += n;
    return s;
  };
  const skipValue = (t: number): unknown => {
    if (t === 8) return str();
    if (t === 9) {
      const et = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skipValue(et);
      return undefined;
    }
    const size = SCALAR[t];
    if (!size) throw new Error(`bad value type ${t}`);
    const v = t === 4 ? b.readUInt32LE(p) : undefined;
    p += size;
    return v;
  };
  if (b.toString('latin1', 0, 4) !== 'GGUF') throw new Error('not GGUF');
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const t = u32();
    const v = skipValue(t);
    if (key === 'general.alignment') alignment = v as number;
  }
  const infos: { name: string; ne: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    const type = u32();
    const offset = u64();
    infos.push({ name, ne, type, offset });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  const tensors = new Map(infos.map((t) => [t.name, { name: t.name, ne: t.ne, type: t.type, start: dataStart + t.offset }]));
  return { version, alignment, tensors, bytes: b };
}

export function rowBytes(type: number, ne0: number): number {
  const t = GGML_TYPES[type];
  if (!t) throw new Error(`type ${type} not in the test table`);
  return (ne0 / t.blockSize) * t.blockBytes;
}

/** Little-endian byte builder. */
export class Bytes {
  private parts: Buffer[] = [];
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  raw(b: Uint8Array | string): this {
    this.parts.push(typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b));
    return this;
  }
  /** GGUF string: u64 length then bytes; lengthOverride writes a lying length. */
  str(s: string, lengthOverride?: number | bigint): this {
    const body = Buffer.from(s, 'utf8');
    return this.u64(lengthOverride ?? body.length).raw(body);
  }
  padTo(alignment: number): this {
    const n = this.length % alignment;
    if (n) this.parts.push(Buffer.alloc(alignment - n));
    return this;
  }
  get length(): number {
    return this.parts.reduce((a, p) => a + p.length, 0);
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface RawTensor {
  name: string;
  ne: (number | bigint)[];
  type: number;
  offset: number | bigint;
}

/**
 * A GGUF file from parts that may be deliberately wrong. Metadata values are strings or u32.
 * The data section (dataBytes of zeros unless given) follows the tensor table at 32-byte alignment.
 */
export function buildGguf(opts: {
  magic?: string;
  version?: number;
  kv?: [string, string | number][];
  tensors?: RawTensor[];
  dataBytes?: number;
  tensorCountOverride?: number | bigint;
}): Buffer {
  const kv = opts.kv ?? [['general.architecture', 'llama']];
  const tensors = opts.tensors ?? [];
  const w = new Bytes()
    .raw(opts.magic ?? 'GGUF')
    .u32(opts.version ?? 3)
    .u64(opts.tensorCountOverride ?? tensors.length)
    .u64(kv.length);
  for (const [k, v] of kv) {
    w.str(k);
    if (typeof v === 'string') w.u32(8).str(v);
    else w.u32(4).u32(v);
  }
  for (const t of tensors) {
    w.str(t.name).u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.type).u64(t.offset);
  }
  w.padTo(32);
  w.raw(Buffer.alloc(opts.dataBytes ?? 0));
  return w.build();
}
