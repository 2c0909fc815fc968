// Throughput of prefill (pp64, pp512) and decode (tg32) on random GGUF models shaped like
// Llama-3.2-1B's layers (width 2048, ffn 8192, 32 heads / 8 kv heads, vocab 128256; 4 layers),
// threads 2. With LLAMA_BENCH=<path to llama-bench>, llama.cpp runs on the same files in the same
// run and a ratio line per case is printed. `npm run bench -- --json` writes JSON to stdout.
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { llama1bShapedModel } from './bench-models.js';
import { loadModel } from '../lib/model.js';
import { native } from '../lib/native.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const threads = Number(process.env.BENCH_THREADS ?? 2);
const types = (process.env.BENCH_TYPES ?? 'f16,q8_0,q4_K').split(',');
const reps = Number(process.env.BENCH_REPS ?? 2);
const log = (s: string) => process.stderr.write(s + '\n');

interface Case {
  type: string;
  test: 'pp64' | 'pp512' | 'tg32';
  ours: number; // tokens per second
  llamaCpp?: number;
  ratio?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function ours(path: string): Promise<Record<string, number>> {
  const model = await loadModel(path);
  const session = model.createSession({ nCtx: 1024, threads });
  const out: Record<string, number> = {};
  try {
    for (const n of [64, 512]) {
      const times: number[] = [];
      for (let r = 0; r < reps + 1; r++) {
        session.remove(0);
        const tokens = Array.from({ length: n }, (_, i) => (i * 7919) % 128000);
        const t0 = performance.now();
        await session.eval({ tokens, outputRows: 'last' });
        if (r > 0) times.push(performance.now() - t0); // first run warms the page cache
      }
      out[`pp${n}`] = (n / median(times)) * 1000;
    }
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      session.remove(0);
      await session.eval({ tokens: [1], outputRows: 'last' });
      const t0 = performance.now();
      for (let i = 0; i < 32; i++) await session.eval({ tokens: [(i * 31) % 128000], outputRows: 'last' });
      times.push(performance.now() - t0);
    }
    out.tg32 = (32 / median(times)) * 1000;
  } finally {
    session.dispose();
    model.dispose();
  }
  return out;
}

// Older llama-bench builds lack some flags; ask its --help which ones it has.
function llamaBenchFlags(bin: string): string[] {
  let help = '';
  try {
    help = execFileSync(bin, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    help = String((e as { stdout?: string }).stdout ?? '');
  }
  const flags: string[] = [];
  // Weight repacking crashes on some AVX-512 CPUs with GCC 12 builds (AMX path); keep the plain layout.
  if (/--no-repack|-nr,/.test(help)) flags.push('-nr', '1');
  return flags;
}

function llamaBench(bin: string, path: string): Record<string, number> {
  const raw = execFileSync(bin, ['-m', path, '-t', String(threads), '-p', '64,512', '-n', '32', '-r', String(reps), '-o', 'json', ...llamaBenchFlags(bin)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const rows = JSON.parse(raw) as { n_prompt: number; n_gen: number; avg_ts: number }[];
  const out: Record<string, number> = {};
  for (const r of rows) out[r.n_gen > 0 ? `tg${r.n_gen}` : `pp${r.n_prompt}`] = r.avg_ts;
  return out;
}

async function main() {
  const cases: Case[] = [];
  const bin = process.env.LLAMA_BENCH;
  log(`lro-native bench: threads ${threads}, kernels ${native().cpuFeatures()}`);
  for (const type of types) {
    const path = await llama1bShapedModel(type, log);
    const o = await ours(path);
    let l: Record<string, number> | undefined;
    if (bin) {
      try {
        l = llamaBench(bin, path);
      } catch (e) {
        log(`llama-bench failed on ${path}: ${(e as Error).message}`);
      }
    }
    for (const test of ['pp64', 'pp512', 'tg32'] as const) {
      const c: Case = { type, test, ours: o[test] };
      if (l?.[test]) {
        c.llamaCpp = l[test];
        c.ratio = c.ours / c.llamaCpp;
      }
      cases.push(c);
      if (!asJson)
        console.log(
          `${type.padEnd(5)} ${test.padEnd(6)} ours ${c.ours.toFixed(1).padStart(8)} t/s` +
            (c.llamaCpp ? `   llama.cpp ${c.llamaCpp.toFixed(1).padStart(8)} t/s` : ''),
        );
      if (c.ratio !== undefined && !asJson) console.log(`ratio ${type} ${test} ${c.ratio.toFixed(3)}`);
    }
  }
  if (asJson) console.log(JSON.stringify({ threads, kernels: native().cpuFeatures(), cases }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
