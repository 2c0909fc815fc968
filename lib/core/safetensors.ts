// safetensors files: an 8-byte little-endian header length, a JSON header, then one data buffer.
// https://github.com/huggingface/safetensors#format
import { open, readFile } from 'node:fs/promises';
import { writeAtomically } from './atomic-file.js';

export type SafetensorsDtype =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export interface SafetensorsTensorData {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Raw little-endian bytes, row-major. */
  data: Uint8Array;
}

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** [begin, end) relative to the start of the data buffer */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** File offset of the data buffer (8 + header length). */
  dataStart: number;
  metadata: Record<string, string>;
  /** In data-offset order. */
  tensors: Map<string, SafetensorsEntry>;
}

// Headers above this are refused: they would only come from a corrupt or hostile file.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The header bytes (length prefix + JSON padded with spaces to a multiple of 8, as HF's writer does). */
export function encodeSafetensorsHeader(
  tensors: readonly { name: string; dtype: SafetensorsDtype; shape: number[]; byteLength: number }[],
  metadata?: Record<string, string>,
): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new Error('safetensors: "__metadata__" cannot be a tensor name');
    if (Object.prototype.hasOwnProperty.call(header, t.name)) throw new Error(`safetensors: tensor "${t.name}" given twice`);
    const bytes = t.byteLength;
    const expected = elementCount(t.shape) * DTYPE_BYTES[t.dtype];
    if (bytes !== expected)
      throw new Error(`safetensors: tensor "${t.name}" has ${bytes} bytes, expected ${expected} for ${t.dtype} ${JSON.stringify(t.shape)}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

/**
 * Writes a safetensors file atomically: a temp file in the same folder, fsync, then rename, so a
 * reader (or a crash) never sees a partial file under the final name. Returns the file size.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorData[],
  metadata?: Record<string, string>,
): Promise<number> {
  const header = encodeSafetensorsHeader(
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength })),
    metadata,
  );
  const size = tensors.reduce((a, t) => a + t.data.byteLength, header.length);
  await writeAtomically(path, async (fh, tmp) => {
    // writev caps the number of buffers per call (IOV_MAX); write in groups.
    const chunks: Uint8Array[] = [header, ...tensors.map((t) => t.data)];
    for (let i = 0; i < chunks.length; i += 512) {
      const group = chunks.slice(i, i + 512);
      const want = group.reduce((a, c) => a + c.byteLength, 0);
      let done = 0;
      while (done < want) {
        // A short writev is legal; resume from the first byte not written.
        let skip = done;
        const rest: Uint8Array[] = [];
        for (const c of group) {
          if (skip >= c.byteLength) skip -= c.byteLength;
          else {
            rest.push(skip ? c.subarray(skip) : c);
            skip = 0;
          }
        }
        const { bytesWritten } = await fh.writev(rest);
        if (bytesWritten === 0) throw new Error(`${tmp}: write made no progress (disk full?)`);
        done += bytesWritten;
      }
    }
  });
  return size;
}

function parseHeader(path: string, json: string, dataStart: number, fileSize: number): SafetensorsHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`${path}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${path}: safetensors header is not a JSON object`);
  const metadata: Record<string, string> = {};
  const entries: [string, SafetensorsEntry][] = [];
  const dataSize = fileSize - dataStart;
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null) throw new Error(`${path}: safetensors __metadata__ is not an object`);
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new Error(`${path}: safetensors __metadata__["${k}"] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${path}: tensor "${name}"`;
    if (typeof v !== 'object' || v === null) throw new Error(`${where}: entry is not an object`);
    if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) throw new Error(`${where}: unknown dtype ${JSON.stringify(v.dtype)}`);
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new Error(`${where}: shape must be an array of non-negative integers`);
    const off = v.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1])
      throw new Error(`${where}: data_offsets must be [begin, end] with begin <= end`);
    const dtype = v.dtype as SafetensorsDtype;
    const shape = v.shape as number[];
    if (off[1] - off[0] !== elementCount(shape) * DTYPE_BYTES[dtype])
      throw new Error(`${where}: data_offsets span ${off[1] - off[0]} bytes, but ${dtype} ${JSON.stringify(shape)} needs ${elementCount(shape) * DTYPE_BYTES[dtype]}`);
    if (off[1] > dataSize) throw new Error(`${where}: data ends at ${off[1]}, beyond the ${dataSize}-byte data buffer (truncated file?)`);
    entries.push([name, { dtype, shape, dataOffsets: [off[0], off[1]] }]);
  }
  entries.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  return { dataStart, metadata, tensors: new Map(entries) };
}

/** Reads and validates the header only (cheap on multi-GB files). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size < 8) throw new Error(`${path}: ${size} bytes is too short for a safetensors file`);
    const head = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    const n = head.readBigUInt64LE(0);
    if (n > BigInt(Math.min(MAX_HEADER_BYTES, size - 8)))
      throw new Error(`${path}: safetensors header length ${n} runs past the end of the ${size}-byte file`);
    const json = Buffer.alloc(Number(n));
    await fh.read(json, 0, json.length, 8);
    return parseHeader(path, json.toString('utf8'), 8 + json.length, size);
  } finally {
    await fh.close();
  }
}

/** Reads one tensor's bytes. The header may be passed in to avoid re-reading it. */
export async function readSafetensorsTensor(path: string, name: string, header?: SafetensorsHeader): Promise<SafetensorsTensorData> {
  const h = header ?? (await readSafetensorsHeader(path));
  const e = h.tensors.get(name);
  if (!e) throw new Error(`${path}: no tensor named "${name}"`);
  const [b, end] = e.dataOffsets;
  const data = new Uint8Array(end - b);
  const fh = await open(path, 'r');
  try {
    let done = 0;
    while (done < data.length) {
      const { bytesRead } = await fh.read(data, done, data.length - done, h.dataStart + b + done);
      if (bytesRead === 0) throw new Error(`${path}: tensor "${name}" is cut short (truncated file?)`);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { name, dtype: e.dtype, shape: e.shape, data };
}

/** Reads the whole file. */
export async function readSafetensors(path: string): Promise<{ metadata: Record<string, string>; tensors: Map<string, SafetensorsTensorData> }> {
  const h = await readSafetensorsHeader(path);
  const buf = (await readFile(path)).subarray(h.dataStart);
  const tensors = new Map<string, SafetensorsTensorData>();
  for (const [name, e] of h.tensors) {
    // Copy out so each tensor owns an aligned buffer (a Float32Array view needs 4-byte alignment).
    const data = new Uint8Array(buf.subarray(e.dataOffsets[0], e.dataOffsets[1]));
    tensors.set(name, { name, dtype: e.dtype, shape: e.shape, data });
  }
  return { metadata: h.metadata, tensors };
}
