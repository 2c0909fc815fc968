// Does memory stay flat over a long run? The CLI's `capture` and `trace` (with --capture, every
// early decode and every ablation) on the first BENCH_QUESTIONS GSM8K test questions (1,000) with
// the built-in organism, each in its own process, its RSS (VmRSS, /proc/<pid>/status) sampled every
// 200 ms. Prints the RSS at 10%, 50% and 100% of the run's time, the peak, and the growth over the
// second half per 100 questions (questions run at an even pace): a leak shows as a steady slope
// there; the capture buffers up to one shard (--shard-mb 64) between writes. Linux only.
//   BENCH_QUESTIONS=1000 BENCH_THREADS=2 `npm run bench:memory [-- --json]`
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchRoot, sharedDir } from './bench-paths.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const questions = Number(process.env.BENCH_QUESTIONS ?? 1000);
const threads = Number(process.env.BENCH_THREADS ?? 2);
const log = (s: string) => process.stderr.write(s + '\n');

const cli = join(benchRoot, 'dist', 'bin', 'lro-native.js');

interface Sample {
  ms: number;
  rssMb: number;
}

interface Job {
  name: string;
  args: string[];
  /** records written, read at the end */
  records: () => number;
}

function rssMb(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function lines(path: string): number {
  try {
    return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '').length;
  } catch {
    return 0;
  }
}

function manifestRecords(dir: string): number {
  try {
    return (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { records?: unknown[] }).records?.length ?? 0;
  } catch {
    return 0;
  }
}

async function run(job: Job): Promise<Sample[]> {
  const samples: Sample[] = [];
  const child = spawn(process.execPath, [cli, ...job.args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  const t0 = Date.now();
  const timer = setInterval(() => {
    const rss = rssMb(child.pid!);
    if (rss === null) return;
    samples.push({ ms: Date.now() - t0, rssMb: rss });
    if (samples.length % 150 === 0) log(`  ${job.name}: ${(samples[samples.length - 1].ms / 1000).toFixed(0)} s, RSS ${rss.toFixed(0)} MB`);
  }, 200);
  const code: number = await new Promise((res) => child.on('exit', (c) => res(c ?? 1)));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${job.name} failed (exit ${code}): ${stderr}`);
  return samples;
}

/** RSS at a fraction of the run's time (the first sample at or after it). */
function rssAt(samples: Sample[], fraction: number): number {
  const end = samples[samples.length - 1].ms;
  return (samples.find((s) => s.ms >= fraction * end) ?? samples[samples.length - 1]).rssMb;
}

async function main(): Promise<void> {
  if (!existsSync(cli)) throw new Error(`${cli} not found: run npm run build first`);
  const data = join(sharedDir, 'data', 'gsm8k', 'test.jsonl');
  if (!existsSync(data)) throw new Error(`GSM8K test set not found at ${data} (set LRO_SHARED to the shared data folder)`);
  const tmp = mkdtempSync(join(tmpdir(), 'lro-memory-'));
  const common = ['--data', data, '--limit', String(questions), '--threads', String(threads)];
  const jobs: Job[] = [
    {
      name: 'capture',
      args: ['capture', ...common, '--out', join(tmp, 'capture'), '--points', 'resid_post,final_norm,latent_proj', '--shard-mb', '64', '-q'],
      records: () => manifestRecords(join(tmp, 'capture')),
    },
    {
      name: 'trace',
      args: ['trace', ...common, '--out', join(tmp, 'traces.jsonl'), '--early-decode', '--ablations', 'zero,skip,noise', '--capture', join(tmp, 'trace-capture'), '--shard-mb', '64', '-q'],
      records: () => lines(join(tmp, 'traces.jsonl')),
    },
  ];
  log(`bench:memory: ${questions} GSM8K questions, the built-in organism, threads ${threads}, RSS sampled every 200 ms`);
  const rows = [];
  try {
    for (const job of jobs) {
      const samples = await run(job);
      if (samples.length === 0) throw new Error(`${job.name}: no RSS sample (the run took under 200 ms, or /proc is missing)`);
      const n = job.records();
      const row = {
        job: job.name,
        records: n,
        seconds: samples[samples.length - 1].ms / 1000,
        rssAt10: rssAt(samples, 0.1),
        rssAt50: rssAt(samples, 0.5),
        rssAt100: rssAt(samples, 1),
        peakRss: Math.max(...samples.map((s) => s.rssMb)),
        // growth over the second half, per 100 records
        mbPer100: n > 1 ? ((rssAt(samples, 1) - rssAt(samples, 0.5)) / (n / 2)) * 100 : 0,
      };
      rows.push(row);
      if (!asJson)
        console.log(
          `${job.name.padEnd(8)} ${row.records} records in ${row.seconds.toFixed(0)} s: RSS ${row.rssAt10.toFixed(0)} MB at 10%, ${row.rssAt50.toFixed(0)} MB at 50%, ${row.rssAt100.toFixed(0)} MB at the end (peak ${row.peakRss.toFixed(0)} MB); second half ${row.mbPer100 >= 0 ? '+' : ''}${row.mbPer100.toFixed(2)} MB per 100 questions`,
        );
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (asJson) console.log(JSON.stringify({ questions, threads, rows }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
