// Capture end to end: the CLI on the f32 golden model, read back with the test's own safetensors
// reader and compared with Session.eval; shards, resume, interruption; the library API.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { capture, loadModel, readCaptureManifest, readCaptureTensorF32, type CaptureManifest, type Model } from '../lib/index.js';
import { maxAbsDiff } from './helpers/compare.js';
import { expectUserError, runCli, startCli } from './helpers/cli.js';
import { manifestModelPath } from '../lib/capture/capture-manifest.js';
import { modelPath, sharedFile } from './helpers/paths.js';
import { f32, readSt, wideToF32, type StFile, type StTensor } from './helpers/safetensors.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-capture-'));
let model: Model;
const THREADS = 2;

beforeAll(async () => {
  model = await loadModel(modelPath('f32'));
});
afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** What Session.eval gives for the record, per point name. */
async function reference(tokens: number[], points: string[]): Promise<Record<string, Float32Array>> {
  const s = model.createSession({ nCtx: 1024, threads: THREADS });
  try {
    const hooks = points.filter((p) => p !== 'logits' && p !== 'final_norm');
    const r = await s.eval({ tokens, outputRows: 'all', logits: true, finalNorm: true, capture: hooks });
    return { logits: r.logits!, final_norm: r.finalNorm!, ...r.captures };
  } finally {
    s.dispose();
  }
}

const shardCache = new Map<string, StFile>();
function tensorOf(dir: string, t: { file: string; key: string }): StTensor {
  const path = join(dir, t.file);
  if (!shardCache.has(path)) shardCache.set(path, readSt(path));
  const x = shardCache.get(path)!.tensors.get(t.key);
  if (!x) throw new Error(`${t.key} not in ${t.file}`);
  return x;
}

async function checkAgainstEval(dir: string, m: CaptureManifest, exact: boolean): Promise<void> {
  for (const rec of m.records) {
    const ref = await reference(rec.tokens, Object.keys(rec.tensors));
    for (const [point, t] of Object.entries(rec.tensors)) {
      const width = point === 'logits' ? 2003 : 256;
      expect(t.shape).toEqual([rec.tokens.length, width]);
      expect(t.key).toBe(`${rec.id}/${point}`);
      const st = tensorOf(dir, t);
      expect(st.dtype).toBe(t.dtype);
      expect(st.shape).toEqual(t.shape);
      const got = st.dtype === 'F32' ? new Float32Array(st.bytes.buffer, 0, st.bytes.length / 4) : wideToF32(st);
      const want = ref[point];
      if (exact) expect(maxAbsDiff(got, want), `${rec.id} ${point}`).toBe(0);
      else {
        // Round-to-nearest to 16 bits: within half an ulp of the 16-bit format.
        const rel = st.dtype === 'F16' ? 2 ** -11 : 2 ** -8;
        for (let i = 0; i < want.length; i++) {
          const tol = Math.max(Math.abs(want[i]) * rel, st.dtype === 'F16' ? 2 ** -25 : 0);
          if (!(Math.abs(got[i] - want[i]) <= tol)) throw new Error(`${rec.id} ${point}[${i}]: ${got[i]} vs ${want[i]}`);
        }
      }
    }
  }
}

describe('capture CLI', () => {
  test('--prompt: logits, final_norm, resid_post of all layers; equal to eval', async () => {
    const out = join(tmp, 'prompt');
    const prompt = 'Janet’s ducks lay 16 eggs per day.';
    const r = await runCli(['capture', '--model', modelPath('f32'), '--prompt', prompt, '--points', 'logits,final_norm,resid_post', '--layers', 'all', '--out', out, '--threads', String(THREADS)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    const m = await readCaptureManifest(out);
    expect(m).toMatchObject({ format: 'lro-capture', version: 2, complete: true });
    expect(m.settings.points).toEqual(['logits', 'final_norm', 'resid_post.0', 'resid_post.1', 'resid_post.2', 'resid_post.3']);
    expect(m.records).toHaveLength(1);
    expect(m.records[0].id).toBe('prompt');
    expect(m.records[0].text).toBe(prompt);
    expect(m.records[0].tokens).toEqual(model.tokenize(prompt));
    expect(readdirSync(out).sort()).toEqual(['manifest.json', 'shard-00000.safetensors']);
    await checkAgainstEval(out, m, true);
    // The library reader agrees with the test reader.
    const lib = await readCaptureTensorF32(out, m.records[0].tensors['resid_post.2']);
    expect(maxAbsDiff(lib, f32(readSt(join(out, 'shard-00000.safetensors')), 'prompt/resid_post.2'))).toBe(0);
  });

  test('--tokens with the other hook points and a layer list', async () => {
    const out = join(tmp, 'tokens');
    const r = await runCli(['capture', '-m', modelPath('f32'), '--tokens', '1997,32,613,65,68,681', '--points', 'embed,resid_pre,attn_out,resid_mid,mlp_out,resid_post.3', '--layers', '0,2', '-o', out, '--threads', String(THREADS)]);
    expect(r.code, r.stderr).toBe(0);
    const m = await readCaptureManifest(out);
    expect(m.settings.points).toEqual(['embed', 'resid_pre.0', 'resid_pre.2', 'attn_out.0', 'attn_out.2', 'resid_mid.0', 'resid_mid.2', 'mlp_out.0', 'mlp_out.2', 'resid_post.3']);
    expect(m.records[0]).toMatchObject({ id: 'tokens', tokens: [1997, 32, 613, 65, 68, 681] });
    expect(m.records[0].text).toBeUndefined();
    await checkAgainstEval(out, m, true);
  });

  test.each(['f16', 'bf16'])('--dtype %s', async (dtype) => {
    const out = join(tmp, `dtype-${dtype}`);
    const r = await runCli(['capture', '-m', modelPath('f32'), '-p', 'A robe takes 2 bolts of blue fiber', '--points', 'logits,final_norm,resid_post', '--layers', '1', '-o', out, '--dtype', dtype, '--threads', String(THREADS)]);
    expect(r.code, r.stderr).toBe(0);
    const m = await readCaptureManifest(out);
    expect(m.settings.dtype).toBe(dtype);
    for (const t of Object.values(m.records[0].tensors)) expect(t.dtype).toBe(dtype.toUpperCase());
    const shard = statSync(join(out, 'shard-00000.safetensors')).size;
    const n = m.records[0].tokens.length;
    expect(shard).toBeLessThan(n * (2003 + 256 * 2) * 2 + 4096); // 2 bytes a value
    await checkAgainstEval(out, m, false);
  });

  test('--data JSONL: ids, shards bounded by --shard-mb, progress on stderr', async () => {
    const data = join(tmp, 'small.jsonl');
    writeFileSync(
      data,
      [
        JSON.stringify({ question: 'Tom has 3 apples. How many?' }),
        JSON.stringify({ prompt: 'Sara buys 12 eggs for $2.' }),
        '',
        JSON.stringify({ question: 'A train goes 60 miles per hour.', id: 'train' }),
        JSON.stringify({ question: 'Not captured (limit).' }),
      ].join('\n'),
    );
    const out = join(tmp, 'data');
    // ~30 KB shards: a record's logits alone are ~8 KB a token, so several shards.
    const r = await runCli(['capture', '-m', modelPath('f32'), '--data', data, '--limit', '3', '-o', out, '--shard-mb', '0.03', '--threads', String(THREADS)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/capture: \d+\/3 records/);
    expect(r.stderr).toMatch(/capture: 3 records \(\d+ tokens\) written to/);
    const m = await readCaptureManifest(out);
    expect(m.records.map((x) => x.id)).toEqual(['0', '1', 'train']);
    expect(m.records[1].text).toBe('Sara buys 12 eggs for $2.');
    expect(m.shards.length).toBeGreaterThan(2);
    const files = readdirSync(out).filter((f) => f.endsWith('.safetensors'));
    expect(files.sort()).toEqual(m.shards.map((s) => s.file).sort());
    for (const s of m.shards) expect(statSync(join(out, s.file)).size).toBe(s.bytes);
    await checkAgainstEval(out, m, true);
  });

  test('--resume skips captured records; a rerun without it is refused', async () => {
    const data = sharedFile('data', 'gsm8k', 'test.jsonl');
    const out = join(tmp, 'resume');
    const base = ['capture', '-m', modelPath('f32'), '--data', data, '-o', out, '--points', 'final_norm,resid_post', '--layers', '3', '-q'];
    const a = await runCli([...base, '--limit', '3']);
    expect(a.code, a.stderr).toBe(0);
    const first = await readCaptureManifest(out);
    const firstShards = first.shards.map((s) => [s.file, statSync(join(out, s.file)).mtimeMs]);

    const again = await runCli([...base, '--limit', '5']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds a capture.*--resume/);

    const other = await runCli([...base.map((x) => (x === 'final_norm,resid_post' ? 'logits' : x)), '--limit', '5', '--resume']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/other settings \(points/);

    const b = await runCli([...base, '--limit', '5', '--resume']);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/2 records .* 5 records in .*3 already captured/);
    const m = await readCaptureManifest(out);
    expect(m.complete).toBe(true);
    expect(m.records.map((x) => x.id)).toEqual(['0', '1', '2', '3', '4']);
    for (const [file, mtime] of firstShards) expect(statSync(join(out, file as string)).mtimeMs).toBe(mtime);
    await checkAgainstEval(out, m, true);
  });

  test('--resume compares the model, the data and the head by content; the manifest finds a model moved with its folder', async () => {
    const data = sharedFile('data', 'gsm8k', 'test.jsonl');
    const dir = join(tmp, 'identity');
    mkdirSync(dir, { recursive: true });
    const model = join(dir, 'model.gguf');
    copyFileSync(modelPath('f32'), model);
    // Same size, other content: the last weight's last byte changed.
    const twin = join(dir, 'twin.gguf');
    const bytes = readFileSync(model);
    bytes[bytes.length - 1] ^= 0x01;
    writeFileSync(twin, bytes);
    const otherData = join(dir, 'other.jsonl');
    const lines = readFileSync(data, 'utf8').split('\n');
    writeFileSync(otherData, [JSON.stringify({ question: 'Another question?', answer: '#### 1' }), ...lines.slice(1, 4)].join('\n') + '\n');
    const out = join(dir, 'cap');
    const args = (m: string, d: string) => ['capture', '-m', m, '--data', d, '-o', out, '--points', 'final_norm', '--limit', '2', '--plain', '-q'];
    expect((await runCli(args(model, data))).code).toBe(0);
    const m = await readCaptureManifest(out);
    expect(m.model.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.model.relative).toBe('../model.gguf');
    expect(m.inputs!.source!.what).toBe(data);

    expectUserError(await runCli([...args(twin, data), '--resume']), /made from another model: .*model\.gguf \(sha256 [0-9a-f]{12}\) there, .*twin\.gguf/);
    expectUserError(await runCli([...args(model, otherData), '--resume']), /made from other records: .*test\.jsonl .* there, .*other\.jsonl/);
    expect((await readCaptureManifest(out)).records.map((r) => r.id)).toEqual(['0', '1']);

    // Moved with its model: found by the relative path; the old absolute one no longer exists.
    const moved = join(tmp, 'identity-moved');
    renameSync(dir, moved);
    const mm = await readCaptureManifest(join(moved, 'cap'));
    expect(manifestModelPath(join(moved, 'cap'), mm.model)).toBe(join(moved, 'model.gguf'));
    renameSync(moved, dir);
  });

  test('a full disk while writing a shard: a clear error, and the last good manifest is intact', async (ctx) => {
    const mnt = join(tmp, 'small-disk');
    mkdirSync(mnt, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=768k', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      ctx.skip(); // mounting a small tmpfs needs root; CI runs as root
      return;
    }
    try {
      const out = join(mnt, 'cap');
      const r = await runCli(['capture', '-m', modelPath('f32'), '--data', sharedFile('data', 'gsm8k', 'test.jsonl'), '--limit', '60', '-o', out,
        '--points', 'final_norm', '--plain', '--shard-mb', '0.05', '-q']);
      expectUserError(r, /no space left on the device while writing .*small-disk\/cap\/.*; free some space and rerun/);
      const m = await readCaptureManifest(out);
      expect(m.complete).toBe(false);
      expect(m.records.length).toBeGreaterThan(0);
      expect(m.records.length).toBeLessThan(60);
      // Every record the manifest lists is on disk and reads back.
      for (const rec of m.records) for (const t of Object.values(rec.tensors)) expect(statSync(join(out, t.file)).size).toBeGreaterThan(0);
      await checkAgainstEval(out, m, false);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  test('Ctrl-C keeps the finished records; --resume completes the run', async () => {
    const data = sharedFile('data', 'gsm8k', 'test.jsonl');
    const out = join(tmp, 'interrupt');
    const args = ['capture', '-m', modelPath('f32'), '--data', data, '-o', out, '--points', 'resid_post', '--layers', '3', '--limit', '300', '--threads', '1', '--flush-secs', '0', '--shard-mb', '2'];
    const { child, done } = startCli(args);
    // Progress goes to stderr (not a terminal: a line at the first record, then every few seconds).
    await new Promise<void>((resolve) => {
      let seen = '';
      child.stderr!.on('data', (d: string) => {
        seen += d;
        if (/capture: \d+\/300 records/.test(seen)) resolve();
      });
    });
    // Let a few shards be written first, so the kept records span several of them.
    await new Promise((r) => setTimeout(r, 500));
    child.kill('SIGINT');
    const r = await done;
    if (r.code === 0) throw new Error('the capture finished before it could be interrupted; raise --limit');
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/rerun with --resume/);
    const partial = await readCaptureManifest(out);
    expect(partial.complete).toBe(false);
    expect(partial.records.length).toBeGreaterThan(0);
    expect(readdirSync(out).filter((f) => f.includes('.tmp'))).toEqual([]);

    const r2 = await runCli([...args, '--resume', '-q']);
    expect(r2.code, r2.stderr).toBe(0);
    const m = await readCaptureManifest(out);
    expect(m.complete).toBe(true);
    expect(m.records.map((x) => x.id)).toEqual(Array.from({ length: 300 }, (_, i) => String(i)));
    // Spot-check a record from each run.
    const pick = { ...m, records: [m.records[0], m.records[partial.records.length], m.records[299]] };
    await checkAgainstEval(out, pick, true);
  }, 180_000);
});

describe('capture library API', () => {
  test('AbortSignal stops after the current record; resume finishes', async () => {
    const out = join(tmp, 'lib-abort');
    const records = ['one two three', 'four five', 'six seven eight nine', 'ten'].map((text, i) => ({ id: `r${i}`, text }));
    const ac = new AbortController();
    const seen: number[] = [];
    await expect(
      capture(model, records, {
        out,
        points: ['final_norm', 'resid_post.1'],
        threads: THREADS,
        signal: ac.signal,
        onProgress: (p) => {
          seen.push(p.captured);
          if (p.captured === 2) ac.abort();
        },
      }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    const partial = await readCaptureManifest(out);
    expect(partial.complete).toBe(false);
    expect(partial.records.map((r) => r.id)).toEqual(['r0', 'r1']);

    const res = await capture(model, records, { out, points: ['final_norm', 'resid_post.1'], threads: THREADS, resume: true });
    expect(res).toMatchObject({ captured: 2, skipped: 2 });
    expect(res.manifest.records.map((r) => r.id)).toEqual(['r0', 'r1', 'r2', 'r3']);
    await checkAgainstEval(out, res.manifest, true);
  });

  test('long records run in pieces of batchSize equal one whole batch within f32 rounding', async () => {
    const out = join(tmp, 'lib-batch');
    const text = 'Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins.';
    const res = await capture(model, [{ id: 'x', text }], { out, points: ['logits', 'resid_post.3'], batchSize: 7, threads: THREADS });
    const ref = await reference(res.manifest.records[0].tokens, ['resid_post.3']);
    const t = res.manifest.records[0].tensors;
    expect(maxAbsDiff(await readCaptureTensorF32(out, t.logits), ref.logits)).toBeLessThanOrEqual(1e-3);
    expect(maxAbsDiff(await readCaptureTensorF32(out, t['resid_post.3']), ref['resid_post.3'])).toBeLessThanOrEqual(1e-3);
  });

  test('readCaptureManifest rejects a manifest of another version, naming the field', async () => {
    const dir = join(tmp, 'bad-manifest');
    const m = await readCaptureManifest(join(tmp, 'prompt'));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...m, version: 3 }));
    await expect(readCaptureManifest(dir)).rejects.toThrow(/manifest\.json: version: /);
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...m, shards: [] }));
    await expect(readCaptureManifest(dir)).rejects.toThrow(/records\.0\.tensors\.logits\.file: .* not a listed shard/);
    writeFileSync(join(dir, 'manifest.json'), '{"format": ');
    await expect(readCaptureManifest(dir)).rejects.toThrow(/not valid JSON/);
  });
});
