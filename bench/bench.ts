// Throughput of prefill (pp64, pp512) and decode (tg32) on random GGUF models shaped like
// Llama-3.2-1B's layers (width 2048, ffn 8192, 32 heads / 8 kv heads, vocab 128256; 4 layers).
// With LLAMA_BENCH=<path to llama-bench>, llama.cpp runs on the same files in the same run,
// interleaved with ours (ours, llama.cpp, ours, llama.cpp, ...; BENCH_REPS each, default 5), and a
// ratio line (the median of each repetition's ours / llama.cpp) is printed per case. Noise: every
// sample records the load average before it and its CPU time / wall time; a sample is flagged
// "disturbed" when its threads got less than 75% of the CPU they asked for, or when it is more than
// 25% from its case's median, and the ratio uses the undisturbed pairs when at least 3 are left.
// Limits, measured here on the same threads: memory bandwidth (a STREAM-style triad) for decode, and
// for prefill the peak of the dot product the type's kernels use (f32 FMA; int8 dot for the integer
// types and bf16 dot for BF16 where the CPU has them; register-only loops); each case prints the
// fraction of its limit it reaches.
//   BENCH_TYPES=f16,bf16,q8_0,q4_0,q4_K,q6_K  BENCH_THREADS=1,2  BENCH_REPS=5  `npm run bench [-- --json]`
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { llama1bShapedModel } from './bench-models.js';
import { loadModel } from '../lib/engine/model.js';
import { native } from '../lib/core/native.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const threadList = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number);
const types = (process.env.BENCH_TYPES ?? 'f16,bf16,q8_0,q4_0,q4_K,q6_K').split(',');
const reps = Math.max(1, Number(process.env.BENCH_REPS ?? 5));
const log = (s: string) => process.stderr.write(s + '\n');
const TESTS = ['pp64', 'pp512', 'tg32'] as const;
type Test = (typeof TESTS)[number];

interface Sample {
  tps: number;
  load1: number;
  /** CPU seconds / wall seconds of the run: about the thread count when nothing else runs. */
  cpuPerWall: number | null;
  disturbed: boolean;
}

interface Side {
  median: number;
  min: number;
  max: number;
  samples: Sample[];
}

interface Case {
  type: string;
  test: Test;
  threads: number;
  ours: Side;
  llamaCpp?: Side;
  /** Median of the paired ratios (see pairedRatio). */
  ratio?: number;
  /** Decode: weight bytes streamed per second / triad bandwidth. Prefill: matmul FLOP/s / peak FMA FLOP/s. */
  limitFraction: number;
  /** Our process's peak RSS over the case's model load and runs (Linux; null elsewhere). */
  peakRssMb: number | null;
}

/** Resets this process's peak RSS (VmHWM) so that the next reading covers what follows (Linux). */
function resetPeakRss(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not Linux, or not allowed: the reading then covers the whole run so far
  }
}

function peakRssMb(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** CPU seconds of this process's finished children (Linux /proc; null elsewhere). */
function childCpuSeconds(): number | null {
  try {
    const f = readFileSync('/proc/self/stat', 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // fields 16 and 17 (cutime, cstime) are rest[13], rest[14]; clock ticks of 1/100 s on Linux.
    return (Number(rest[13]) + Number(rest[14])) / 100;
  } catch {
    return null;
  }
}

/** One timed run of fn with its load average and CPU/wall (own CPU, or children's CPU). */
async function timed(fn: () => Promise<number> | number, children: boolean): Promise<{ seconds: number; load1: number; cpuPerWall: number | null }> {
  const load1 = loadavg()[0];
  const c0 = children ? childCpuSeconds() : process.cpuUsage();
  const t0 = performance.now();
  const seconds = await fn();
  const wall = (performance.now() - t0) / 1000;
  let cpu: number | null;
  if (children) {
    const c1 = childCpuSeconds();
    cpu = c0 === null || c1 === null ? null : c1 - (c0 as number);
  } else {
    const d = process.cpuUsage(c0 as NodeJS.CpuUsage);
    cpu = (d.user + d.system) / 1e6;
  }
  return { seconds, load1, cpuPerWall: cpu === null || wall <= 0 ? null : cpu / wall };
}

/**
 * One sample of each test with our engine. As llama-bench does before each of its tests, an untimed
 * warm-up run of the same shape comes first: the other engine's run in between leaves the caches
 * (and, on machines that reclaim idle page cache, the mapped weights) cold.
 */
async function oursOnce(session: ReturnType<Awaited<ReturnType<typeof loadModel>>['createSession']>): Promise<Record<Test, { tps: number; load1: number; cpuPerWall: number | null }>> {
  const out = {} as Record<Test, { tps: number; load1: number; cpuPerWall: number | null }>;
  for (const n of [64, 512] as const) {
    const tokens = Array.from({ length: n }, (_, i) => (i * 7919) % 128000);
    session.remove(0);
    const warm = await session.eval({ tokens, outputRows: 'last' });
    session.remove(0);
    const r = await timed(async () => {
      const t0 = performance.now();
      await session.eval({ tokens, outputRows: 'last', recycle: warm });
      return (performance.now() - t0) / 1000;
    }, false);
    out[`pp${n}`] = { tps: n / r.seconds, load1: r.load1, cpuPerWall: r.cpuPerWall };
  }
  session.remove(0);
  // Each eval recycles the output before it, as a sampling loop would (see EvalInput.recycle).
  let prev = await session.eval({ tokens: [1], outputRows: 'last' });
  prev = await session.eval({ tokens: [2], outputRows: 'last', recycle: prev });
  const r = await timed(async () => {
    const t0 = performance.now();
    for (let i = 0; i < 32; i++) prev = await session.eval({ tokens: [(i * 31) % 128000], outputRows: 'last', recycle: prev });
    return (performance.now() - t0) / 1000;
  }, false);
  out.tg32 = { tps: 32 / r.seconds, load1: r.load1, cpuPerWall: r.cpuPerWall };
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

/** One llama-bench sample of each test (-r 1), as one child process. */
async function llamaOnce(bin: string, path: string, threads: number): Promise<Record<Test, { tps: number; load1: number; cpuPerWall: number | null }>> {
  let raw = '';
  const r = await timed(() => {
    const t0 = performance.now();
    raw = execFileSync(bin, ['-m', path, '-t', String(threads), '-p', '64,512', '-n', '32', '-r', '1', '-o', 'json', ...llamaBenchFlags(bin)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return (performance.now() - t0) / 1000;
  }, true);
  const rows = JSON.parse(raw) as { n_prompt: number; n_gen: number; avg_ts: number }[];
  const out = {} as Record<Test, { tps: number; load1: number; cpuPerWall: number | null }>;
  for (const row of rows) out[(row.n_gen > 0 ? `tg${row.n_gen}` : `pp${row.n_prompt}`) as Test] = { tps: row.avg_ts, load1: r.load1, cpuPerWall: r.cpuPerWall };
  return out;
}

/** Median and spread of a case's samples, each flagged as disturbed or not. */
function side(raw: { tps: number; load1: number; cpuPerWall: number | null }[], threads: number, processLevelCpu: boolean): Side {
  const m = median(raw.map((s) => s.tps));
  const samples = raw.map((s) => ({
    ...s,
    // A child's CPU/wall covers its whole process (model load included), so only a gross shortfall counts there.
    disturbed: (s.cpuPerWall !== null && s.cpuPerWall < (processLevelCpu ? 0.5 : 0.75) * threads) || Math.abs(s.tps - m) > 0.25 * m,
  }));
  return { median: m, min: Math.min(...raw.map((s) => s.tps)), max: Math.max(...raw.map((s) => s.tps)), samples };
}

/**
 * The median over repetitions of ours / llama.cpp, each sample against the one run right after it:
 * the machine's bandwidth drifts over minutes here (a 2-thread read loop 34-55 GB/s), and a pair a
 * few seconds apart sees the same state where the two medians may not. Pairs with a disturbed
 * sample are left out when 3 or more others remain.
 */
function pairedRatio(ours: Side, llama: Side, pairs: { o: number; l: number }[]): number {
  const ratios = (ps: typeof pairs) => ps.map((p) => ours.samples[p.o].tps / llama.samples[p.l].tps);
  const calm = pairs.filter((p) => !ours.samples[p.o].disturbed && !llama.samples[p.l].disturbed);
  return median(ratios(calm.length >= 3 ? calm : pairs));
}

/**
 * What one token costs. Decode streams every weight but the token embedding (unless it is also the
 * output head). Prefill with outputRows 'last' runs the blocks' matmuls on every token except the
 * last block's past its keys and values (q, output, gate, up, down: `lastRowParams`), which run on
 * the output row alone as does the output head, so a prompt of n tokens costs
 * 2 * (blockParams - lastRowParams) + 2 * (lastRowParams + headParams) / n FLOPs per token.
 */
function modelCost(path: string): { decodeBytes: number; blockParams: number; headParams: number; lastRowParams: number } {
  const info = native().inspectGguf(path, 0);
  const tied = !info.tensors.some((t) => t.name === 'output.weight');
  const lastBlock = Math.max(...info.tensors.map((t) => Number(/^blk\.(\d+)\./.exec(t.name)?.[1] ?? -1)));
  const rowOnly = new RegExp(`^blk\\.${lastBlock}\\.(attn_q|attn_output|ffn_gate|ffn_up|ffn_down)\\.weight$`);
  let decodeBytes = 0;
  let blockParams = 0;
  let headParams = 0;
  let lastRowParams = 0;
  for (const t of info.tensors) {
    if (t.shape.length < 2) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const isHead = t.name === 'output.weight' || (tied && t.name === 'token_embd.weight');
    if (t.name === 'token_embd.weight' && !tied) continue;
    decodeBytes += t.bytes;
    if (isHead) headParams += n;
    else blockParams += n;
    if (rowOnly.test(t.name)) lastRowParams += n;
  }
  return { decodeBytes, blockParams, headParams, lastRowParams };
}

/** The prefill ceiling of a weight type: the dot product its kernels use where the CPU has one. */
type Limits = { fmaGflops: number; int8Gops: number; bf16Gflops: number };
const integerType = (type: string) => /^q/.test(type);
function prefillPeak(type: string, l: Limits): number {
  if (integerType(type) && l.int8Gops > 0) return l.int8Gops;
  if (type === 'bf16' && l.bf16Gflops > 0) return l.bf16Gflops;
  return l.fmaGflops;
}
function prefillPeakName(type: string, l: Limits): string {
  if (integerType(type) && l.int8Gops > 0) return 'int8 dot';
  if (type === 'bf16' && l.bf16Gflops > 0) return 'bf16 dot';
  return 'FMA';
}

const fmt = (x: number) => x.toFixed(1).padStart(8);
const spread = (s: Side) => `±${((100 * (s.max - s.min)) / 2 / s.median).toFixed(0)}%`;
const flagged = (s: Side) => s.samples.filter((x) => x.disturbed).length;

async function main() {
  const cases: Case[] = [];
  const bin = process.env.LLAMA_BENCH;
  const kernels = native().cpuFeatures();
  log(`lro-native bench: kernels ${kernels}, threads ${threadList.join(',')} (physical cores ${native().physicalCores()}), ${reps} samples each${bin ? ', interleaved with llama-bench' : ''}`);
  const limits: Record<number, { triadGBps: number; fmaGflops: number; int8Gops: number; bf16Gflops: number }> = {};
  for (const threads of threadList) {
    limits[threads] = native().machineLimits(threads, 256);
    const l = limits[threads];
    const line =
      `limits at ${threads} thread(s): triad ${l.triadGBps.toFixed(1)} GB/s, FMA peak ${l.fmaGflops.toFixed(1)} GFLOP/s (f32)` +
      (l.int8Gops > 0 ? `, int8 dot peak ${l.int8Gops.toFixed(1)} GOP/s` : '') +
      (l.bf16Gflops > 0 ? `, bf16 dot peak ${l.bf16Gflops.toFixed(1)} GFLOP/s` : '');
    if (asJson) log(line);
    else console.log(line);
  }
  for (const type of types) {
    const path = (await llama1bShapedModel(type, log)).model;
    const cost = modelCost(path);
    for (const threads of threadList) {
      resetPeakRss();
      const model = await loadModel(path);
      if (threads === threadList[0]) log(`${type}: weights ${model.info.weightMemory === 'copy' ? 'copied into huge pages' : 'mapped'} (LRO_WEIGHT_MEMORY)`);
      const session = model.createSession({ nCtx: 1024, threads });
      const ourRaw: Record<Test, { tps: number; load1: number; cpuPerWall: number | null }[]> = { pp64: [], pp512: [], tg32: [] };
      const llamaRaw: Record<Test, { tps: number; load1: number; cpuPerWall: number | null }[]> = { pp64: [], pp512: [], tg32: [] };
      // Per repetition, the indices of our sample and of the llama.cpp sample run right after it.
      const pairs: Record<Test, { o: number; l: number }[]> = { pp64: [], pp512: [], tg32: [] };
      try {
        await oursOnce(session); // loads the pages and starts the pool
        for (let r = 0; r < reps; r++) {
          const o = await oursOnce(session);
          for (const t of TESTS) ourRaw[t].push(o[t]);
          if (bin) {
            try {
              const l = await llamaOnce(bin, path, threads);
              for (const t of TESTS) {
                if (!l[t]) continue;
                pairs[t].push({ o: ourRaw[t].length - 1, l: llamaRaw[t].length });
                llamaRaw[t].push(l[t]);
              }
            } catch (e) {
              log(`llama-bench failed on ${path}: ${(e as Error).message}`);
            }
          }
        }
      } finally {
        session.dispose();
        model.dispose();
      }
      const peakRss = peakRssMb();
      for (const test of TESTS) {
        const ours = side(ourRaw[test], threads, false);
        const lim = limits[threads];
        const promptTokens = test === 'pp64' ? 64 : 512;
        const limitFraction =
          test === 'tg32'
            ? (ours.median * cost.decodeBytes) / (lim.triadGBps * 1e9)
            : (ours.median * (2 * (cost.blockParams - cost.lastRowParams) + (2 * (cost.lastRowParams + cost.headParams)) / promptTokens)) / (prefillPeak(type, lim) * 1e9);
        const c: Case = { type, test, threads, ours, limitFraction, peakRssMb: peakRss };
        if (llamaRaw[test].length) {
          c.llamaCpp = side(llamaRaw[test], threads, true);
          c.ratio = pairedRatio(ours, c.llamaCpp, pairs[test]);
        }
        cases.push(c);
        if (!asJson) {
          const what = test === 'tg32' ? 'of triad bandwidth' : `of ${prefillPeakName(type, lim)} peak`;
          console.log(
            `${type.padEnd(5)} ${test.padEnd(6)} t${threads}  ours ${fmt(ours.median)} t/s ${spread(ours).padStart(5)}` +
              (c.llamaCpp ? `   llama.cpp ${fmt(c.llamaCpp.median)} t/s ${spread(c.llamaCpp).padStart(5)}` : '') +
              `   ${(100 * limitFraction).toFixed(0).padStart(3)}% ${what}` +
              (flagged(ours) + (c.llamaCpp ? flagged(c.llamaCpp) : 0) > 0 ? `   disturbed: ${flagged(ours)} ours${c.llamaCpp ? `, ${flagged(c.llamaCpp)} llama.cpp` : ''}` : '') +
              `   load ${ours.samples[0].load1.toFixed(2)}` +
              (peakRss !== null ? `   peak RSS ${peakRss.toFixed(0)} MB` : ''),
          );
          if (c.ratio !== undefined) console.log(`ratio ${type} ${test} t${threads} ${c.ratio.toFixed(3)}`);
        }
      }
    }
  }
  if (asJson) console.log(JSON.stringify({ threads: threadList, kernels, reps, limits, cases }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
