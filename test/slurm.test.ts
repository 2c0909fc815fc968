// The Slurm example against a real Slurm: a one-node cluster on localhost (tools/slurm-local.sh:
// munged, slurmctld, slurmd with a generated slurm.conf), the example array job over 3 shards of
// the built-in organism plus its dependent merge, and the merged output compared with a
// one-machine run. Skipped, saying so, only where Slurm is not installed (.ci/run installs it).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readCaptureManifest, readCaptureTensorF32 } from '../lib/index.js';
import { runCli } from './helpers/cli.js';
import { cliPath, projectRoot, sharedFile } from './helpers/paths.js';

const have = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const slurm = ['sbatch', 'slurmctld', 'slurmd', 'munged', 'squeue'].every(have) && process.getuid?.() === 0;
if (!slurm) console.warn('slurm.test.ts: skipped: slurm-wlm and munge are not installed here (or not root); .ci/run installs them (apt-get install slurm-wlm munge)');

const tmp = mkdtempSync(join(tmpdir(), 'lro-slurm-'));
const state = join(tmp, 'slurm');
const script = join(projectRoot, 'tools', 'slurm-local.sh');
afterAll(() => {
  if (existsSync(state)) spawnSync(script, ['stop', state], { stdio: 'inherit' });
  rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!slurm)('Slurm job array (examples/slurm)', () => {
  it('3 array tasks and the dependent merge give the one-machine trace and capture', async () => {
    const data = join(tmp, 'q.jsonl');
    writeFileSync(data, readFileSync(sharedFile('data', 'gsm8k', 'test.jsonl'), 'utf8').split('\n').slice(0, 9).join('\n') + '\n');
    const traceArgs = ['--max-answer-tokens', '6'];
    const one = join(tmp, 'one');
    mkdirSync(one);
    const r = await runCli(['trace', '--model', 'organism', '--data', data, '-o', join(one, 'traces.jsonl'), '--capture', join(one, 'capture'), '--points', 'resid_post,latent_proj', '--positions', 'latent', '--threads', '1', '-q', ...traceArgs]);
    expect(r.code, r.stderr).toBe(0);

    execFileSync(script, ['start', state], { stdio: 'inherit', timeout: 60_000 });
    const out = join(tmp, 'out');
    mkdirSync(out);
    const env = {
      ...process.env,
      SLURM_CONF: join(state, 'slurm.conf'),
      DATA: data,
      OUT: out,
      SHARDS: '3',
      LRO: `${process.execPath} ${cliPath}`,
      MODEL: 'organism',
      TRACE_ARGS: traceArgs.join(' '),
      SBATCH_ARGS: `--chdir=${out} --cpus-per-task=1`,
    };
    const submitted = execFileSync(join(projectRoot, 'examples', 'slurm', 'submit.sh'), { env, encoding: 'utf8', timeout: 30_000 });
    expect(submitted).toMatch(/array job \d+, merge job \d+/);
    // Bounded wait: until the queue is empty (the merge ran) or 4 minutes.
    const t0 = Date.now();
    for (;;) {
      const q = execFileSync('squeue', ['-h', '-o', '%i %T'], { env, encoding: 'utf8' }).trim();
      if (q === '') break;
      if (Date.now() - t0 > 240_000) throw new Error(`Slurm jobs still queued after 4 minutes:\n${q}`);
      await new Promise((res) => setTimeout(res, 500));
    }
    const logs = readdirSync(out).filter((f) => f.endsWith('.log'));
    const logText = logs.map((f) => `--- ${f}\n${readFileSync(join(out, f), 'utf8')}`).join('\n');
    expect(logs.filter((f) => f.startsWith('lro-trace-')), logText).toHaveLength(3);
    expect(existsSync(join(out, 'traces.jsonl')), logText).toBe(true);

    expect(readFileSync(join(out, 'traces.jsonl'), 'utf8')).toBe(readFileSync(join(one, 'traces.jsonl'), 'utf8'));
    const [a, b] = [await readCaptureManifest(join(one, 'capture')), await readCaptureManifest(join(out, 'capture'))];
    expect(b.records.map((x) => x.id)).toEqual(a.records.map((x) => x.id));
    expect(b.settings).toEqual(a.settings);
    for (const [i, rec] of a.records.entries())
      for (const [point, t] of Object.entries(rec.tensors)) expect(await readCaptureTensorF32(join(out, 'capture'), b.records[i].tensors[point])).toEqual(await readCaptureTensorF32(join(one, 'capture'), t));
  }, 360_000);
});
