// Oracle LoRA training throughput and peak memory: one AdamW step on a batch of oracle-shaped
// examples (injection at block 1, loss on the answer tokens only), on the tiny golden model and on
// random models shaped like Llama-3.2-1B's layers (width 2048, ffn 8192, 32/8 heads, vocab 128256,
// tied output; 4 layers) with f32 and q8_0 weights. Each case runs in a child process, so its
// peak RSS (VmHWM) is its own. When `python3 -c "import torch, peft"` works, bench/train_torch.py
// runs the same step with PyTorch + PEFT on the CPU (f32) and a ratio line is printed per case.
// Knobs: BENCH_THREADS (2), BENCH_STEPS (timed steps; 3), BENCH_CASES (all), BENCH_TORCH=0 (skip),
// BENCH_RANK (64), BENCH_BATCH (4), BENCH_SEQ (64), BENCH_LOSS_TOKENS (16). `-- --json` for JSON.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../lib/engine/model.js';
import { llama1bShapedModel } from './bench-models.js';
import { native, type NativeTrainExample } from '../lib/core/native.js';
import { rng } from '../lib/core/random.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const env = (k: string, d: number) => Number(process.env[k] ?? d);
const threads = env('BENCH_THREADS', 2);
const steps = env('BENCH_STEPS', 3);
const rank = env('BENCH_RANK', 64);
const batch = env('BENCH_BATCH', 4);
const seq = env('BENCH_SEQ', 64);
const lossTokens = env('BENCH_LOSS_TOKENS', 16);
const log = (s: string) => process.stderr.write(s + '\n');

const here = dirname(fileURLToPath(import.meta.url));
// dist/bench/train.js and bench/train.ts sit at different depths below the project root.
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((r) => existsSync(join(r, 'package.json')))!;
const sharedDir = process.env.LRO_SHARED ? resolve(process.env.LRO_SHARED) : resolve(root, '..', 'shared');

interface CaseSpec {
  name: string;
  type: 'f32' | 'q8_0';
  /** GGUF for ours; HF folder or a shape name for torch */
  torch: string | null;
}
const CASES: CaseSpec[] = [
  { name: 'tiny-f32', type: 'f32', torch: join(sharedDir, 'golden', 'hf', 'tiny-llama3') },
  { name: '1b-4l-f32', type: 'f32', torch: '1b-4l' },
  { name: '1b-4l-q8_0', type: 'q8_0', torch: null },
];

interface Result {
  case: string;
  tokensPerSec: number;
  msPerStep: number;
  peakRssMb: number;
  params: number;
}

async function modelFile(c: CaseSpec): Promise<string> {
  if (c.name === 'tiny-f32') return join(sharedDir, 'golden', 'gguf', 'tiny-l3.f32.gguf');
  return llama1bShapedModel(c.type, log);
}

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
}

/** Runs in the child: one case, JSON on stdout. */
async function runCase(name: string): Promise<void> {
  const c = CASES.find((x) => x.name === name)!;
  const model = await loadModel(await modelFile(c));
  const { nVocab, nEmbd } = model.info;
  const next = rng(11);
  const examples: NativeTrainExample[] = Array.from({ length: batch }, () => {
    const tokens = Int32Array.from({ length: seq }, () => Math.floor(next() * Math.min(nVocab, 2000)));
    const lossMask = Uint8Array.from({ length: seq }, (_, t) => (t >= seq - lossTokens ? 1 : 0));
    const vectors = Float32Array.from({ length: nEmbd }, () => next() - 0.5);
    return { tokens, lossMask, injectPositions: Int32Array.from([5]), vectors };
  });
  const tr = new (native().NativeTrainer)(
    model.nativeHandle,
    { rank, alpha: 2 * rank, initSeed: 1 },
    { lr: 1e-5, weightDecay: 0.01, maxGradNorm: 1 },
    { injectLayer: 1, threads },
  );
  await tr.step(examples); // first step: page-ins and buffer growth
  let tokens = 0;
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) tokens += (await tr.step(examples)).tokens;
  const ms = performance.now() - t0;
  const r: Result = { case: name, tokensPerSec: (tokens / ms) * 1000, msPerStep: ms / steps, peakRssMb: peakRssMb(), params: tr.info().trainableParams };
  tr.dispose();
  model.dispose();
  process.stdout.write(JSON.stringify(r) + '\n');
}

function torchAvailable(): boolean {
  if (process.env.BENCH_TORCH === '0') return false;
  return spawnSync('python3', ['-c', 'import torch, peft'], { stdio: 'ignore' }).status === 0;
}

/** lossRowsOnly: the output head on the loss rows only, as the engine runs it; else HF's default loss (every row). */
function torchCase(c: CaseSpec, lossRowsOnly: boolean): Result | null {
  if (!c.torch) return null;
  const script = join(root, 'bench', 'train_torch.py');
  const out = execFileSync(
    'python3',
    [
      script,
      '--model',
      c.torch,
      '--threads',
      String(threads),
      '--steps',
      String(steps),
      '--rank',
      String(rank),
      '--batch',
      String(batch),
      '--seq',
      String(seq),
      '--loss-tokens',
      String(lossTokens),
      ...(lossRowsOnly ? ['--loss-rows-only'] : []),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  return { case: c.name, ...(JSON.parse(out.trim().split('\n').pop()!) as Omit<Result, 'case'>) };
}

async function main(): Promise<void> {
  const at = args.indexOf('--case');
  if (at >= 0) return runCase(args[at + 1]);
  const wanted = process.env.BENCH_CASES ? process.env.BENCH_CASES.split(',') : CASES.map((c) => c.name);
  const withTorch = torchAvailable();
  log(`lro-native bench:train: threads ${threads}, kernels ${native().cpuFeatures()}, batch ${batch} x ${seq} tokens (${lossTokens} loss tokens each), LoRA r ${rank} on all 7 matrices${withTorch ? '' : '; PyTorch + PEFT not found (pip install torch transformers peft), no ratio'}`);
  const rows: { ours: Result; torch: Result | null; torchLossRows: Result | null; ratio: number | null; ratioLossRows: number | null }[] = [];
  for (const c of CASES.filter((x) => wanted.includes(x.name))) {
    await modelFile(c); // generated here, once, not inside the timed child
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--case', c.name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
    if (child.status !== 0) throw new Error(`case ${c.name} failed (exit ${child.status})`);
    const ours = JSON.parse(child.stdout.trim().split('\n').pop()!) as Result;
    let torch: Result | null = null;
    let torchLossRows: Result | null = null;
    if (withTorch) {
      try {
        torch = torchCase(c, false);
        torchLossRows = torchCase(c, true);
      } catch (e) {
        log(`torch ${c.name} failed: ${(e as Error).message}`);
      }
    }
    const ratio = torch ? ours.tokensPerSec / torch.tokensPerSec : null;
    const ratioLossRows = torchLossRows ? ours.tokensPerSec / torchLossRows.tokensPerSec : null;
    rows.push({ ours, torch, torchLossRows, ratio, ratioLossRows });
    if (!asJson) {
      const t = (r: Result) => `${r.tokensPerSec.toFixed(1).padStart(7)} tok/s peak RSS ${r.peakRssMb.toFixed(0).padStart(5)} MB`;
      console.log(`${c.name.padEnd(11)} ours          ${t(ours)}  (${ours.msPerStep.toFixed(0)} ms/step)`);
      if (torch) console.log(`${''.padEnd(11)} torch+peft    ${t(torch)}  (HF loss: head on every row)`);
      if (torchLossRows) console.log(`${''.padEnd(11)} torch+peft    ${t(torchLossRows)}  (head on the loss rows only)`);
      if (ratio !== null) console.log(`ratio ${c.name} ${ratio.toFixed(2)} vs HF loss, ${ratioLossRows?.toFixed(2) ?? 'n/a'} vs loss rows only (ours / torch+peft tokens/s)`);
    }
  }
  if (asJson) console.log(JSON.stringify({ threads, kernels: native().cpuFeatures(), batch, seq, lossTokens, rank, rows }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
