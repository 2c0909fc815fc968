// Sharding a run over independent workers (Slurm job arrays, Kubernetes Indexed Jobs, or by hand):
// which records a shard owns, where its output goes, and the small file beside that output that
// says which shard it is, whether it finished, and where each of its records stood in the data
// (so that `merge` can rebuild the one-machine order).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from './atomic-file.js';
import { InputError } from './errors.js';

export interface Shard {
  /** 0-based. */
  index: number;
  count: number;
}

/**
 * A record's shard depends on its id and the count only: not on its neighbours, not on how many
 * records the data holds (the partition is stable when the data grows), not on the worker.
 */
export const SHARD_PARTITION = 'sha256("lro-shard/1:" + id) mod count';

export function shardOfId(id: string, count: number): number {
  const h = createHash('sha256').update(`lro-shard/1:${id}`).digest();
  return Number(h.readBigUInt64BE(0) % BigInt(count));
}

export const MAX_SHARDS = 100_000;

function checkShard(index: number, count: number, what: string): Shard {
  if (!Number.isInteger(count) || count < 1 || count > MAX_SHARDS) throw new InputError(`${what}: the shard count must be a whole number from 1 to ${MAX_SHARDS}, got ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new InputError(`${what}: the shard index must be a whole number from 0 to ${count - 1}, got ${index}`);
  return { index, count };
}

/** "I/N" with 0 <= I < N. */
export function parseShard(text: string, what = '--shard'): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw new InputError(`${what}: expected I/N (shard I of N, 0-based, e.g. 0/4), got "${text}"`);
  return checkShard(Number(m[1]), Number(m[2]), what);
}

const intEnv = (env: NodeJS.ProcessEnv, name: string): number | undefined => {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v.trim())) throw new InputError(`${name}=${v}: expected a whole number`);
  return Number(v);
};

/**
 * The shard of this worker: --shard when given; else a Slurm array task (SLURM_ARRAY_TASK_ID, with
 * SLURM_ARRAY_TASK_COUNT or MIN/MAX), else a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with
 * --shard-count or LRO_SHARD_COUNT); else none (the whole data).
 */
export function resolveShard(flag: string | undefined, countFlag: number | undefined, env: NodeJS.ProcessEnv = process.env): Shard | null {
  if (flag !== undefined) return parseShard(flag);
  const task = intEnv(env, 'SLURM_ARRAY_TASK_ID');
  if (task !== undefined) {
    const min = intEnv(env, 'SLURM_ARRAY_TASK_MIN') ?? 0;
    const max = intEnv(env, 'SLURM_ARRAY_TASK_MAX');
    const count = countFlag ?? intEnv(env, 'SLURM_ARRAY_TASK_COUNT') ?? (max !== undefined ? max - min + 1 : undefined);
    if (count === undefined) throw new InputError('SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX; give --shard I/N');
    // Arrays with a step (--array=0-9:2) have ids that are not consecutive: refuse them rather than lose records.
    if (max !== undefined && max - min + 1 !== count)
      throw new InputError(`the Slurm array runs ${count} tasks over ids ${min}-${max}: use consecutive ids (--array=${min}-${min + count - 1}) or give --shard I/N`);
    return checkShard(task - min, count, `SLURM_ARRAY_TASK_ID=${task}`);
  }
  const index = intEnv(env, 'JOB_COMPLETION_INDEX');
  if (index !== undefined) {
    const count = countFlag ?? intEnv(env, 'LRO_SHARD_COUNT');
    if (count === undefined) throw new InputError('JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give the number of completions with --shard-count N or LRO_SHARD_COUNT');
    return checkShard(index, count, `JOB_COMPLETION_INDEX=${index}`);
  }
  if (countFlag !== undefined) throw new InputError('--shard-count needs a shard index: --shard I/N, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX');
  return null;
}

/** Where shard I of N writes: "traces.jsonl" -> "traces.shard-1-of-3.jsonl"; "capture" -> "capture.shard-1-of-3". */
export function shardPath(out: string, shard: Shard | null, kind: 'file' | 'folder'): string {
  if (!shard) return out;
  const tag = `shard-${shard.index}-of-${shard.count}`;
  if (kind === 'folder') return `${out.replace(/[\\/]+$/, '')}.${tag}`;
  const ext = extname(out);
  return join(dirname(out), `${basename(out, ext)}.${tag}${ext}`);
}

export const SHARD_FORMAT = 'lro-shard';

export const ShardInfoSchema = z
  .object({
    format: z.literal(SHARD_FORMAT),
    version: z.literal(1),
    /** What made the output: trace, eval, capture. */
    command: z.string().min(1),
    index: z.number().int().nonnegative(),
    count: z.number().int().positive(),
    partition: z.literal(SHARD_PARTITION),
    /** true once the shard's run went through all of its records. */
    complete: z.boolean(),
    /** The shard's records in output order, with their 0-based position among all records of the data. */
    records: z.array(z.object({ id: z.string().min(1), position: z.number().int().nonnegative() }).strict()),
  })
  .strict();
export type ShardInfo = z.infer<typeof ShardInfoSchema>;

/** The shard file of an output: "<file>.shard.json" beside a file, "shard.json" inside a folder. */
export function shardInfoPath(out: string, kind: 'file' | 'folder'): string {
  return kind === 'folder' ? join(out, 'shard.json') : `${out}.shard.json`;
}

export async function readShardInfo(path: string): Promise<ShardInfo | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new InputError(`${path} is not valid JSON; it should say which shard this output is (remove it and rerun the shard)`);
  }
  const r = ShardInfoSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new InputError(`${path}: field '${i.path.join('.') || '(root)'}': ${i.message}`);
  }
  return r.data;
}

/**
 * The part of a run that keeps a shard's output honest: refuses to continue an output made for
 * another shard (or made unsharded), keeps only the shard's records out of the stream, remembers
 * each one's position in the data, and writes the shard file when the run starts and ends.
 */
export class ShardRun {
  private readonly positions = new Map<string, number>();

  private constructor(
    readonly shard: Shard,
    readonly command: string,
  ) {}

  /**
   * For a run writing the given outputs (each with its shard file); a null shard only checks that
   * no output is a shard's.
   */
  static async open(shard: Shard | null | undefined, command: string, outputs: { output: string; info: string }[]): Promise<ShardRun | null> {
    for (const { output, info } of outputs) {
      const have = await readShardInfo(info);
      if (!shard) {
        if (have) throw new InputError(`${output} is shard ${have.index}/${have.count} of a sharded run (${info}); continue it with --shard ${have.index}/${have.count}, or merge the shards`);
        continue;
      }
      if (have && (have.index !== shard.index || have.count !== shard.count || have.command !== command))
        throw new InputError(`${output} holds ${have.command} shard ${have.index}/${have.count} (${info}), not ${command} shard ${shard.index}/${shard.count}; choose another output`);
    }
    return shard ? new ShardRun(shard, command) : null;
  }

  /** The records of this shard; every record read (of any shard) counts towards the positions. */
  async *filter<T extends { id: string }>(records: Iterable<T> | AsyncIterable<T>): AsyncGenerator<T> {
    let position = 0;
    for await (const r of records as AsyncIterable<T>) {
      const p = position++;
      if (shardOfId(r.id, this.shard.count) !== this.shard.index) continue;
      this.positions.set(r.id, p);
      yield r;
    }
  }

  /** Whether this shard owns the record at this position of the data (remembered when it does). */
  take(id: string, position: number): boolean {
    if (shardOfId(id, this.shard.count) !== this.shard.index) return false;
    this.positions.set(id, position);
    return true;
  }

  /** Writes an output's shard file for its records (ids in output order). */
  async write(info: string, ids: Iterable<string>, complete: boolean): Promise<void> {
    const records: ShardInfo['records'] = [];
    for (const id of ids) {
      const position = this.positions.get(id);
      if (position === undefined) {
        if (complete) throw new InputError(`${info}: record "${id}" of the output is not in this shard's records; the data changed since the shard began`);
        continue;
      }
      records.push({ id, position });
    }
    const body: ShardInfo = { format: SHARD_FORMAT, version: 1, command: this.command, index: this.shard.index, count: this.shard.count, partition: SHARD_PARTITION, complete, records };
    await writeFileAtomic(info, JSON.stringify(body) + '\n');
  }
}

export const ShardSchema = z.object({ index: z.number().int().nonnegative(), count: z.number().int().positive().max(MAX_SHARDS) }).strict().refine((s) => s.index < s.count, { message: 'index must be below count' });
