// A capture folder being written: manifest, shards and resume, for any producer of records
// (the plain capture, the reasoning capture, trace --capture). Memory is bounded by one shard;
// the manifest lists a record only once all of its tensors are on disk.
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
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
import { InputError } from '../core/errors.js';
import { native } from '../core/native.js';
import type { SafetensorsDtype } from '../core/safetensors.js';
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
  /** The latent head's and the records' source content hashes; a resume with others is refused. */
  inputs?: CaptureManifest['inputs'];
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

// byContent: the latent head is compared by its hash (inputs), so its path may differ.
function sameSettings(a: CaptureManifest['settings'], b: CaptureManifest['settings'], byContent: boolean): string | undefined {
  const strip = (s: CaptureManifest['settings']) => (byContent && s.reasoning ? { ...s, reasoning: { ...s.reasoning, latentHead: '' } } : s);
  const [x, y] = [strip(a), strip(b)];
  for (const k of new Set([...Object.keys(x), ...Object.keys(y)]) as Set<keyof CaptureManifest['settings']>)
    if (JSON.stringify(x[k]) !== JSON.stringify(y[k])) return `${k} is ${JSON.stringify(x[k])} there, ${JSON.stringify(y[k])} now`;
  return undefined;
}

const short = (h: string | null | undefined) => (h ? h.slice(0, 12) : 'none');

/** Why a manifest's model or inputs are not the run's (by content where both have hashes); null when they are. */
function otherInputs(m: CaptureManifest, init: CaptureSinkInit): string | null {
  if (m.model.sha256 && init.model.sha256) {
    if (m.model.sha256 !== init.model.sha256)
      return `another model: ${m.model.path} (sha256 ${short(m.model.sha256)}) there, ${init.model.path} (sha256 ${short(init.model.sha256)}) now`;
  } else {
    for (const k of ['nVocab', 'nEmbd', 'nLayer', 'fileSize'] as const)
      if (m.model[k] !== init.model[k]) return `another model: ${m.model.path} there, ${init.model.path} now (${k} differs)`;
  }
  if (m.inputs && init.inputs) {
    if (m.inputs.latentHeadSha256 !== init.inputs.latentHeadSha256)
      return `another latent head (sha256 ${short(m.inputs.latentHeadSha256)} there, ${short(init.inputs.latentHeadSha256)} now)`;
    const [a, b] = [m.inputs.source, init.inputs.source];
    if (a?.sha256 !== b?.sha256)
      return `other records: ${a ? `${a.what} (sha256 ${short(a.sha256)})` : 'unrecorded'} there, ${b ? `${b.what} (sha256 ${short(b.sha256)})` : 'unrecorded'} now`;
  }
  return null;
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
      const other = otherInputs(manifest, init);
      if (other) throw new InputError(`${join(init.out, MANIFEST_FILE)} was made from ${other}; resume needs the same inputs (or choose another output folder)`);
      const diff = sameSettings(manifest.settings, init.settings, manifest.inputs !== undefined && init.inputs !== undefined);
      if (diff) throw new InputError(`${join(init.out, MANIFEST_FILE)} was made with other settings (${diff}); resume needs the same ones`);
      // The current locations (the folder or the model may have moved since).
      manifest.model = { ...manifest.model, path: init.model.path, relative: relative(resolve(init.out), resolve(init.model.path)) };
      manifest.settings = init.settings;
      manifest.complete = false;
    } else {
      const now = new Date().toISOString();
      manifest = {
        format: CAPTURE_FORMAT,
        version: CAPTURE_VERSION,
        createdAt: now,
        updatedAt: now,
        complete: false,
        model: { ...init.model, relative: relative(resolve(init.out), resolve(init.model.path)) },
        settings: init.settings,
        ...(init.inputs ? { inputs: init.inputs } : {}),
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
