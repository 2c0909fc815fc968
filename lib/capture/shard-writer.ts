// Collects tensors into safetensors shards of bounded size, each written atomically.
import { join } from 'node:path';
import { writeSafetensors, type SafetensorsDtype, type SafetensorsTensorData } from '../core/safetensors.js';

export interface WrittenShard {
  file: string;
  bytes: number;
  tensors: number;
}

export function shardFileName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}.safetensors`;
}

export const SHARD_FILE_PATTERN = /^shard-(\d{5,})\.safetensors$/;

export class ShardWriter {
  private pending: SafetensorsTensorData[] = [];
  private pendingBytes = 0;
  private pendingSince = 0;
  private index: number;

  /**
   * maxBytes bounds the tensor data of one shard (and so the memory held here); a single tensor
   * larger than that gets a shard of its own.
   */
  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    startIndex: number,
    private readonly metadata: Record<string, string>,
  ) {
    this.index = startIndex;
  }

  /** The shard the next tensor would go to (if it fits). */
  get currentFile(): string {
    return shardFileName(this.index);
  }

  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** Date.now() when the oldest buffered tensor arrived (0 when none is buffered). */
  get bufferedSince(): number {
    return this.pending.length ? this.pendingSince : 0;
  }

  /**
   * Queues a tensor and returns the file it will be written to. If it would overflow the current
   * shard, that shard is written first; the written shard is then returned too.
   */
  async add(name: string, dtype: SafetensorsDtype, shape: number[], data: Uint8Array): Promise<{ file: string; flushed?: WrittenShard }> {
    let flushed: WrittenShard | undefined;
    if (this.pending.length > 0 && this.pendingBytes + data.byteLength > this.maxBytes) flushed = await this.flush();
    if (this.pending.length === 0) this.pendingSince = Date.now();
    this.pending.push({ name, dtype, shape, data });
    this.pendingBytes += data.byteLength;
    return { file: this.currentFile, flushed };
  }

  /** Writes the buffered tensors as the current shard (nothing if none are buffered). */
  async flush(): Promise<WrittenShard | undefined> {
    if (this.pending.length === 0) return undefined;
    const file = this.currentFile;
    const bytes = await writeSafetensors(join(this.dir, file), this.pending, this.metadata);
    const shard = { file, bytes, tensors: this.pending.length };
    this.pending = [];
    this.pendingBytes = 0;
    this.index++;
    return shard;
  }
}
