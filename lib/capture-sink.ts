// A capture folder being written: manifest, shards and resume, for any producer of records
// (the plain capture, the reasoning capture, trace --capture). Memory is bounded by one shard;
// the manifest lists a record only once all of its tensors are on disk.
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CAPTURE_FORMAT,
  CAPTURE_VERSION,
  MANIFEST_FILE,
  readCaptureManifest,
  writeCaptureManifest,
  type CaptureManifest,
  type CaptureRecordEntry,
  type CaptureTensor,
} from './capture-manifest.js';
import { InputError } from './errors.js';
import { native } from './native.js';
import type { SafetensorsDtype } from './safetensors.js';
import { SHARD_FILE_PATTERN, ShardWriter, type WrittenShard } from './shard-writer.js';

export interface CaptureSinkInit {
  out: string;
  resume: boolean;
  /** Bound on the tensor bytes of one shard, which is also what is held in memory. */
  shardBytes: number;
  /** Also write the buffered shard when its oldest tensor is this old (0: only when full). */
  flushIntervalMs: number;
  model: CaptureManifest['model'];
  settings: CaptureManifest['settings'];
}

/** One tensor of a record: rows of `width` float32 values, possibly in several pieces. */
export interface SinkTensor {
  point: string;
  width: number;
  parts: Float32Array[];
  /** Main-sequence positions of the rows; absent: every position of the record. */
  positions?: number[];
}

const SAFETENSORS_DTYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const satisfies Record<string, SafetensorsDtype>;

function sameSettings(a: CaptureManifest['settings'], b: CaptureManifest['settings']): string | undefined {
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof CaptureManifest['settings']>)
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) return `${k} is ${JSON.stringify(a[k])} there, ${JSON.stringify(b[k])} now`;
  return undefined;
}

/** Bytes in the output dtype; the f16/bf16 rounding is native. */
function encode(parts: Float32Array[], dtype: 'f32' | 'f16' | 'bf16'): Uint8Array {
  const bytes = parts.map((p) => (dtype === 'f32' ? new Uint8Array(p.buffer, p.byteOffset, p.byteLength) : native().quantize(dtype, p)));
  if (bytes.length === 1) return bytes[0];
  const out = new Uint8Array(bytes.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of bytes) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

export class CaptureSink {
  readonly out: string;
  readonly manifest: CaptureManifest;
  private readonly writer: ShardWriter;
  private readonly done: Set<string>;
  private readonly onDisk: Set<string>;
  private readonly waiting: CaptureRecordEntry[] = [];
  private manifestOnDisk: boolean;

  private constructor(
    private readonly init: CaptureSinkInit,
    manifest: CaptureManifest,
    nextShard: number,
    manifestOnDisk: boolean,
  ) {
    this.out = init.out;
    this.manifest = manifest;
    this.manifestOnDisk = manifestOnDisk;
    this.done = new Set(manifest.records.map((r) => r.id));
    this.onDisk = new Set(manifest.shards.map((s) => s.file));
    this.writer = new ShardWriter(init.out, init.shardBytes, nextShard, { format: CAPTURE_FORMAT, version: String(CAPTURE_VERSION) });
  }

  /**
   * Creates the folder, or continues it when init.resume is set and its manifest was made with
   * the same settings and model. An existing capture is refused without resume.
   */
  static async open(init: CaptureSinkInit): Promise<CaptureSink> {
    await mkdir(init.out, { recursive: true });
    const exists = await stat(join(init.out, MANIFEST_FILE)).then(
      () => true,
      () => false,
    );
    let manifest: CaptureManifest;
    if (exists) {
      if (!init.resume)
        throw new InputError(`${init.out} already holds a capture (${MANIFEST_FILE}); resume it (--resume) or choose another output folder`);
      manifest = await readCaptureManifest(init.out);
      const diff = sameSettings(manifest.settings, init.settings);
      if (diff) throw new InputError(`${join(init.out, MANIFEST_FILE)} was made with other settings (${diff}); resume needs the same ones`);
      for (const k of ['nVocab', 'nEmbd', 'nLayer', 'fileSize'] as const)
        if (manifest.model[k] !== init.model[k])
          throw new InputError(`${join(init.out, MANIFEST_FILE)} was made with another model (${manifest.model.path}; ${k} differs)`);
      manifest.complete = false;
    } else {
      const now = new Date().toISOString();
      manifest = {
        format: CAPTURE_FORMAT,
        version: CAPTURE_VERSION,
        createdAt: now,
        updatedAt: now,
        complete: false,
        model: init.model,
        settings: init.settings,
        shards: [],
        records: [],
      };
    }
    // Leftovers of a killed run: temp files are garbage, and shard files the manifest does not list
    // hold only unlisted records; new shards are numbered after every existing file so none is reused.
    let nextShard = 0;
    for (const f of await readdir(init.out)) {
      if (/^(shard-\d+\.safetensors|manifest\.json)\.tmp-/.test(f)) await rm(join(init.out, f), { force: true });
      const m = SHARD_FILE_PATTERN.exec(f);
      if (m) nextShard = Math.max(nextShard, Number(m[1]) + 1);
    }
    for (const s of manifest.shards) {
      const m = SHARD_FILE_PATTERN.exec(s.file);
      if (m) nextShard = Math.max(nextShard, Number(m[1]) + 1);
    }
    // Written at the first shard: a run that fails on its first record leaves no manifest behind.
    return new CaptureSink(init, manifest, nextShard, exists);
  }

  /** Whether the manifest already lists the record (resume passes over it). */
  has(id: string): boolean {
    return this.done.has(id);
  }

  get shardCount(): number {
    return this.manifest.shards.length;
  }

  // Moves records whose tensors are all on disk into the manifest, then rewrites it.
  private async commit(shard: WrittenShard | undefined): Promise<void> {
    if (shard) {
      this.manifest.shards.push(shard);
      this.onDisk.add(shard.file);
    }
    while (this.waiting.length && Object.values(this.waiting[0].tensors).every((t) => this.onDisk.has(t.file))) {
      const r = this.waiting.shift()!;
      this.manifest.records.push(r);
      this.done.add(r.id);
    }
    this.manifest.updatedAt = new Date().toISOString();
    await writeCaptureManifest(this.out, this.manifest);
    this.manifestOnDisk = true;
  }

  /** Queues a record's tensors (stored under "<id>/<point>"); writes shards as they fill. */
  async add(entry: Omit<CaptureRecordEntry, 'tensors'>, tensors: SinkTensor[]): Promise<void> {
    const dtype = this.init.settings.dtype;
    const dt = SAFETENSORS_DTYPE[dtype];
    const full: CaptureRecordEntry = { ...entry, tensors: {} };
    for (const t of tensors) {
      const rows = t.parts.reduce((a, p) => a + p.length, 0) / t.width;
      const key = `${entry.id}/${t.point}`;
      const { file, flushed } = await this.writer.add(key, dt, [rows, t.width], encode(t.parts, dtype));
      const ct: CaptureTensor = { file, key, shape: [rows, t.width], dtype: dt };
      if (t.positions) ct.positions = t.positions;
      full.tensors[t.point] = ct;
      if (flushed) await this.commit(flushed);
    }
    this.waiting.push(full);
    const since = this.writer.bufferedSince;
    const stale = this.init.flushIntervalMs > 0 && since > 0 && Date.now() - since >= this.init.flushIntervalMs;
    if (this.writer.bufferedBytes >= this.init.shardBytes || stale) await this.commit(await this.writer.flush());
  }

  /** Writes the last shard and marks the capture complete. */
  async finish(): Promise<CaptureManifest> {
    await this.commit(await this.writer.flush());
    this.manifest.complete = true;
    await this.commit(undefined);
    return this.manifest;
  }

  /** After a failure or interruption: keeps what is buffered (the manifest stays incomplete). Never throws. */
  async salvage(): Promise<void> {
    try {
      const shard = await this.writer.flush();
      if (shard || this.manifestOnDisk) await this.commit(shard);
    } catch {
      /* the caller reports the original error */
    }
  }
}
