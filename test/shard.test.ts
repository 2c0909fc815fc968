// Sharded runs and merge: which records a shard owns (by --shard or a cluster's environment), the
// shard outputs of trace / eval / capture on the built-in organism, a merge that equals the
// one-machine run, and every combination of parts that merge must refuse.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCaptureManifest, readCaptureTensorF32 } from '../lib/index.js';
import { parseShard, resolveShard, shardOfId, shardPath } from '../lib/core/shard.js';
import { expectUserError, runCli } from './helpers/cli.js';
import { sharedFile } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-shard-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the partition', () => {
  it('parses I/N and reads Slurm arrays and Kubernetes Indexed Jobs from the environment', () => {
    expect(parseShard('2/5')).toEqual({ index: 2, count: 5 });
    expect(() => parseShard('5/5')).toThrow(/--shard: the shard index must be a whole number from 0 to 4, got 5/);
    expect(() => parseShard('1-3')).toThrow(/--shard: expected I\/N/);
    expect(() => parseShard('0/0')).toThrow(/shard count must be a whole number from 1/);
    expect(resolveShard(undefined, undefined, {})).toBeNull();
    expect(resolveShard('1/2', undefined, { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '9' })).toEqual({ index: 1, count: 2 });
    // --array=1-3: ids 1..3 are shards 0..2.
    expect(resolveShard(undefined, undefined, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '3' })).toEqual({ index: 2, count: 3 });
    expect(resolveShard(undefined, undefined, { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '3' })).toEqual({ index: 2, count: 3 });
    expect(() => resolveShard(undefined, undefined, { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '8', SLURM_ARRAY_TASK_COUNT: '5' })).toThrow(/consecutive ids/);
    expect(() => resolveShard(undefined, undefined, { SLURM_ARRAY_TASK_ID: 'x', SLURM_ARRAY_TASK_COUNT: '3' })).toThrow(/SLURM_ARRAY_TASK_ID=x: expected a whole number/);
    expect(resolveShard(undefined, 4, { JOB_COMPLETION_INDEX: '3' })).toEqual({ index: 3, count: 4 });
    expect(resolveShard(undefined, undefined, { JOB_COMPLETION_INDEX: '0', LRO_SHARD_COUNT: '2' })).toEqual({ index: 0, count: 2 });
    expect(() => resolveShard(undefined, undefined, { JOB_COMPLETION_INDEX: '0' })).toThrow(/--shard-count N or LRO_SHARD_COUNT/);
    expect(() => resolveShard(undefined, 3, { JOB_COMPLETION_INDEX: '3' })).toThrow(/JOB_COMPLETION_INDEX=3: the shard index must be .* 0 to 2/);
  });

  it("puts a record by its id alone: stable as the data grows, balanced, and a shard's outputs are named for it", () => {
    const ids = Array.from({ length: 3000 }, (_, i) => String(i));
    const a = ids.map((id) => shardOfId(id, 7));
    // Appending records moves none of the old ones; the same id always lands in the same shard.
    expect([...ids, 'x', 'y'].map((id) => shardOfId(id, 7)).slice(0, 3000)).toEqual(a);
    const sizes = [...Array(7).keys()].map((k) => a.filter((s) => s === k).length);
    for (const n of sizes) expect(Math.abs(n - 3000 / 7)).toBeLessThan(80);
    expect(shardPath('out/traces.jsonl', { index: 1, count: 3 }, 'file')).toBe(join('out', 'traces.shard-1-of-3.jsonl'));
    expect(shardPath('out/capture/', { index: 0, count: 2 }, 'folder')).toBe('out/capture.shard-0-of-2');
    expect(shardPath('x.jsonl', null, 'file')).toBe('x.jsonl');
  });
});

describe('sharded trace, eval and capture on the organism, then merge', () => {
  const data = join(tmp, 'q.jsonl');
  const cli = (args: string[], env?: Record<string, string>) => runCli(args, env ? { env } : {});
  const traceArgs = (out: string, cap: string) => ['trace', '--data', data, '-o', out, '--capture', cap, '--points', 'resid_post,latent_proj', '--layers', '1,3', '--positions', 'latent', '--max-answer-tokens', '6', '--ablations', 'zero', '--threads', '2', '-q'];
  const one = join(tmp, 'one.jsonl');
  const oneCap = join(tmp, 'one-cap');
  const parts = join(tmp, 'traces.jsonl');
  const partsCap = join(tmp, 'cap');
  const shardFiles = (n: number) => [...Array(n).keys()].map((i) => join(tmp, `traces.shard-${i}-of-${n}.jsonl`));

  beforeAll(async () => {
    writeFileSync(data, readFileSync(sharedFile('data', 'gsm8k', 'test.jsonl'), 'utf8').split('\n').slice(0, 10).join('\n') + '\n');
    const r = await cli(traceArgs(one, oneCap));
    expect(r.code, r.stderr).toBe(0);
    // Shard 0 by flag, 1 by a Slurm array's environment (--array=1-3: task 2), 2 by a Kubernetes Indexed Job's.
    for (const [args, env] of [
      [['--shard', '0/3'], undefined],
      [[], { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '3', SLURM_ARRAY_TASK_COUNT: '3' }],
      [['--shard-count', '3'], { JOB_COMPLETION_INDEX: '2' }],
    ] as [string[], Record<string, string> | undefined][]) {
      const s = await cli([...traceArgs(parts, partsCap), ...args], env);
      expect(s.code, s.stderr).toBe(0);
    }
  });

  it('each shard holds its own records; merged, the trace file and the capture equal the one-machine run', async () => {
    const ids = shardFiles(3).map((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { id: string }).id),
    );
    ids.forEach((list, i) => list.forEach((id) => expect(shardOfId(id, 3)).toBe(i)));
    expect(ids.flat().sort()).toEqual([...Array(10).keys()].map(String).sort());

    // A merge before every shard's capture is there names what is missing.
    expectUserError(await cli(['merge', '-o', join(tmp, 'm.jsonl'), ...shardFiles(3).slice(0, 2)]), /missing shard 2 of 3; give every shard's output/);
    const m = await cli(['merge', '-o', join(tmp, 'merged.jsonl'), ...shardFiles(3).reverse()]);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/merge: 3 trace shards, 10 records/);
    expect(readFileSync(join(tmp, 'merged.jsonl'), 'utf8')).toBe(readFileSync(one, 'utf8'));
    expect(readFileSync(join(tmp, 'merged.jsonl.settings.json'), 'utf8')).toBe(readFileSync(`${one}.settings.json`, 'utf8'));

    const capParts = [0, 1, 2].map((i) => `${partsCap}.shard-${i}-of-3`);
    const c = await cli(['merge', '-o', join(tmp, 'merged-cap'), ...capParts]);
    expect(c.code, c.stderr).toBe(0);
    const [a, b] = [await readCaptureManifest(oneCap), await readCaptureManifest(join(tmp, 'merged-cap'))];
    expect(b.complete).toBe(true);
    expect(b.settings).toEqual(a.settings);
    expect(b.inputs).toEqual(a.inputs);
    expect(b.model.sha256).toBe(a.model.sha256);
    const strip = (r: (typeof a.records)[number]) => ({ ...r, tensors: Object.fromEntries(Object.entries(r.tensors).map(([k, t]) => [k, { ...t, file: '', key: t.key }])) });
    expect(b.records.map(strip)).toEqual(a.records.map(strip));
    for (const [i, r] of a.records.entries())
      for (const [point, t] of Object.entries(r.tensors)) expect(await readCaptureTensorF32(join(tmp, 'merged-cap'), b.records[i].tensors[point])).toEqual(await readCaptureTensorF32(oneCap, t));
    // The shards were moved, not copied: the part folders are gone.
    for (const p of capParts) expect(existsSync(p), p).toBe(false);
    // make-tasks reads the merged output as it reads a one-machine run's.
    const t = await cli(['make-tasks', '--traces', join(tmp, 'merged.jsonl'), '--capture', join(tmp, 'merged-cap'), '-o', join(tmp, 'tasks'), '--tasks', 'step_identity', '--layers', '3', '-q']);
    expect(t.code, t.stderr).toBe(0);
  });

  it("make-tasks' extra runs in 2 shards, merged, then the splits: the task files of one machine", async () => {
    const args = (out: string) => ['make-tasks', '--traces', join(tmp, 'merged.jsonl'), '--capture', join(tmp, 'merged-cap'), '-o', out, '--layers', '1,3', '--split', '0.5,0.25,0.25', '--threads', '2', '-q'];
    const one = join(tmp, 'mt-one');
    const r = await cli(args(one));
    expect(r.code, r.stderr).toBe(0);
    const out = join(tmp, 'mt');
    for (const i of [0, 1]) {
      const s = await cli([...args(out), '--shard', `${i}/2`, '--json']);
      expect(s.code, s.stderr).toBe(0);
      expect((JSON.parse(s.stdout) as { shard: { questions: number } }).shard.questions).toBeGreaterThan(0);
      expect(existsSync(join(`${out}.shard-${i}-of-2`, 'train.jsonl'))).toBe(false);
    }
    const m = await cli(['merge', '-o', out, `${out}.shard-0-of-2`, `${out}.shard-1-of-2`]);
    expect(m.code, m.stderr).toBe(0);
    expect(readFileSync(join(out, 'extra', 'facts.jsonl'), 'utf8')).toBe(readFileSync(join(one, 'extra', 'facts.jsonl'), 'utf8'));
    const t = await cli([...args(out), '--json']);
    expect(t.code, t.stderr).toBe(0);
    // The same examples; a vector of an extra run lies in another shard file of extra/ (merge numbers
    // the moved files), under the same key, with the same values.
    const shardFile = /"file":"extra\/shard-\d+\.safetensors"/g;
    for (const f of ['train.jsonl', 'val.jsonl', 'test.jsonl'])
      expect(readFileSync(join(out, f), 'utf8').replace(shardFile, '"file":"extra/*"'), f).toBe(readFileSync(join(one, f), 'utf8').replace(shardFile, '"file":"extra/*"'));
    const [a, b] = [await readCaptureManifest(join(one, 'extra')), await readCaptureManifest(join(out, 'extra'))];
    expect(b.records.map((x) => x.id)).toEqual(a.records.map((x) => x.id));
    for (const [i, rec] of a.records.entries())
      for (const [point, t] of Object.entries(rec.tensors)) expect(await readCaptureTensorF32(join(out, 'extra'), b.records[i].tensors[point])).toEqual(await readCaptureTensorF32(join(one, 'extra'), t));
  });

  it('a sharded eval, merged, reports what one machine reports', async () => {
    const evalArgs = (out: string) => ['eval', '--data', data, '-o', out, '--max-answer-tokens', '6', '--threads', '2', '--json', '-q'];
    const whole = JSON.parse((await cli(evalArgs(join(tmp, 'eval-one.jsonl')))).stdout) as { withLatents: unknown; withoutLatents: unknown; questions: number };
    for (const i of [0, 1]) expect((await cli([...evalArgs(join(tmp, 'eval.jsonl')), '--shard', `${i}/2`])).code).toBe(0);
    expect((await cli(['merge', '-o', join(tmp, 'eval-merged.jsonl'), join(tmp, 'eval.shard-0-of-2.jsonl'), join(tmp, 'eval.shard-1-of-2.jsonl')])).code).toBe(0);
    expect(readFileSync(join(tmp, 'eval-merged.jsonl'), 'utf8')).toBe(readFileSync(join(tmp, 'eval-one.jsonl'), 'utf8'));
    const merged = JSON.parse((await cli(evalArgs(join(tmp, 'eval-merged.jsonl')))).stdout) as typeof whole & { questionsThisRun: number };
    expect(merged.questionsThisRun).toBe(0);
    expect([merged.questions, merged.withLatents, merged.withoutLatents]).toEqual([whole.questions, whole.withLatents, whole.withoutLatents]);
    expectUserError(await cli(['eval', '--data', data, '--shard', '0/2', '-q']), /a sharded eval needs --out/);
  });

  it('refuses parts that do not make one run, naming them, and shard outputs continued as another shard', async () => {
    const [s0, s1, s2] = shardFiles(3);
    const out = join(tmp, 'bad.jsonl');
    expectUserError(await cli(['merge', '-o', out, s0, s1, s1]), /shard 1\/3 is given twice: .*traces\.shard-1-of-3\.jsonl and .*traces\.shard-1-of-3\.jsonl/);
    expectUserError(await cli(['merge', '-o', out, data]), /q\.jsonl is not a shard's output \(no .*q\.jsonl\.shard\.json\)/);
    expectUserError(await cli(['merge', '-o', join(tmp, 'merged.jsonl'), s0, s1, s2]), /merged\.jsonl exists; pass --overwrite/);
    // Another setting in one shard: its count of answer tokens.
    const other = join(tmp, 'other.jsonl');
    expect((await cli(['trace', '--data', data, '-o', other, '--shard', '2/3', '--max-answer-tokens', '5', '--threads', '2', '-q'])).code).toBe(0);
    expectUserError(await cli(['merge', '-o', out, s0, s1, join(tmp, 'other.shard-2-of-3.jsonl')]), /were made with other settings or inputs \(maxAnswerTokens is 6 in one, 5 in the other\)/);
    // Another count.
    expect((await cli(['trace', '--data', data, '-o', other, '--shard', '1/2', '--max-answer-tokens', '6', '--threads', '2', '-q'])).code).toBe(0);
    expectUserError(await cli(['merge', '-o', out, s0, join(tmp, 'other.shard-1-of-2.jsonl')]), /is shard 1 of 2, .* shard 0 of 3; the shards of one run share their count/);
    // A shard that did not finish, and one whose shard file lists a record of another part.
    const info = `${s2}.shard.json`;
    const saved = readFileSync(info, 'utf8');
    writeFileSync(info, saved.replace('"complete":true', '"complete":false'));
    expectUserError(await cli(['merge', '-o', out, s0, s1, s2]), /shard 2\/3 \(.*\) did not finish; rerun it with the same command/);
    const stolen = JSON.parse(readFileSync(`${s0}.shard.json`, 'utf8')).records[0] as { id: string; position: number };
    const j = JSON.parse(saved) as { records: unknown[] };
    j.records.push(stolen);
    writeFileSync(info, JSON.stringify(j));
    expectUserError(await cli(['merge', '-o', out, s0, s1, s2]), new RegExp(`record "${stolen.id}" is in two parts`));
    writeFileSync(info, saved);
    // A shard's output continued as another shard, or without --shard: refused, nothing written.
    const before = readFileSync(s1, 'utf8');
    expectUserError(await cli(['trace', '--data', data, '-o', s1, '--max-answer-tokens', '6', '--threads', '2', '-q']), /is shard 1\/3 of a sharded run .*continue it with --shard 1\/3, or merge the shards/);
    expect(readFileSync(s1, 'utf8')).toBe(before);
    expectUserError(await cli(['trace', '--data', data, '-o', join(tmp, 'traces.jsonl'), '--shard', '1/3', '--max-answer-tokens', '7', '--threads', '2', '-q']), /was traced with other settings \(maxAnswerTokens/);
    expectUserError(await cli(['trace', '--prompt', 'hi', '-o', out, '--shard', '0/2', '-q']), /--shard splits a --data file/);
    // Capture shards of other points: refused, naming the setting.
    const capArgs = (i: number, points: string) => ['capture', '--data', data, '-o', join(tmp, 'pc'), '--points', points, '--layers', '1', '--max-answer-tokens', '2', '--threads', '2', '--shard', `${i}/2`, '-q'];
    expect((await cli(capArgs(0, 'resid_post'))).code).toBe(0);
    expect((await cli(capArgs(1, 'final_norm'))).code).toBe(0);
    expectUserError(await cli(['merge', '-o', join(tmp, 'pc-merged'), join(tmp, 'pc.shard-0-of-2'), join(tmp, 'pc.shard-1-of-2')]), /were made with other settings or inputs \(settings is .*resid_post\.1.* in one, .*final_norm.* in the other\)/);
    expect(existsSync(join(tmp, 'pc-merged'))).toBe(false);
    expectUserError(await cli(['merge', '-o', join(tmp, 'pc-merged'), join(tmp, 'pc.shard-0-of-2'), s0]), /is trace file output, .* is capture capture output; merge one kind at a time|is capture capture output, .* is trace file output/);
    expectUserError(await cli(['trace', '--data', data, '-o', out, '--shard', '3/3', '-q']), /--shard: the shard index must be a whole number from 0 to 2, got 3/);
  });
});
