// Training throughput and peak memory, one AdamW step per timing:
//  - oracle LoRA steps (injection at block 1, loss on the answer tokens only) on the tiny golden
//    model and on random models shaped like Llama-3.2-1B's layers (width 2048, ffn 8192, 32/8
//    heads, vocab 128256, tied output; 4 layers) with f32 and q8_0 weights;
//  - the organism's steps (its shape and tokenizer, random weights, batch 16 as its recipe):
//    full-parameter LM pretraining, a full-parameter Coconut stage-2 step and a full-parameter
//    CODI step through the latent chain; and a CODI LoRA step on the 1B-shaped model.
// Each case runs in a child process, so its peak RSS (VmHWM) is its own. When
// `python3 -c "import torch, peft"` works, bench/train_torch.py runs the same step with PyTorch
// (+ PEFT) on the CPU (f32) and a ratio line is printed per case.
// Knobs: BENCH_THREADS (2), BENCH_STEPS (timed steps; 3), BENCH_CASES (all), BENCH_TORCH=0 (skip),
// BENCH_RANK (64), BENCH_BATCH (4), BENCH_SEQ (64), BENCH_LOSS_TOKENS (16). `-- --json` for JSON.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../lib/engine/model.js';
import { llama1bShapedModel, organismShapedModel, type BenchModel } from './bench-models.js';
import { benchRoot, pythonHas, sharedDir } from './bench-paths.js';
import { native, type NativeLatentExample, type NativeTrainExample } from '../lib/core/native.js';
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


type Objective = 'oracle' | 'lm' | 'coconut' | 'codi';
interface CaseSpec {
  name: string;
  objective: Objective;
  mode: 'lora' | 'full';
  shape: 'tiny' | '1b-4l' | 'organism';
  type: 'f32' | 'q8_0';
  batch: number;
  /** run the same step in PyTorch */
  torch: boolean;
}
const CASES: CaseSpec[] = [
  { name: 'tiny-f32', objective: 'oracle', mode: 'lora', shape: 'tiny', type: 'f32', batch, torch: true },
  { name: '1b-4l-f32', objective: 'oracle', mode: 'lora', shape: '1b-4l', type: 'f32', batch, torch: true },
  { name: '1b-4l-q8_0', objective: 'oracle', mode: 'lora', shape: '1b-4l', type: 'q8_0', batch, torch: false },
  { name: 'organism-lm-full', objective: 'lm', mode: 'full', shape: 'organism', type: 'f32', batch: 16, torch: true },
  { name: 'organism-coconut-full', objective: 'coconut', mode: 'full', shape: 'organism', type: 'f32', batch: 16, torch: true },
  { name: 'organism-codi-full', objective: 'codi', mode: 'full', shape: 'organism', type: 'f32', batch: 16, torch: true },
  { name: '1b-4l-codi-lora', objective: 'codi', mode: 'lora', shape: '1b-4l', type: 'f32', batch, torch: true },
];

// The latent objectives' examples, shaped like an organism problem: a 32-token prompt ([bos] q
// [bot]), a 3-step CoT of 8 tokens a step, a 3-token answer prompt and a 3-token answer; the
// labelled tokens are the last ones of each sequence (CoT, answer prompt, answer, eos).
const LATENT = { prompt: 32, cotSteps: 3, cotStepTokens: 8, answerPrompt: 3, answer: 3, codiLatents: 6, coconutStage: 2, latentsPerStep: 2 };
interface LatentShape {
  prompt: number;
  latents: number;
  suffix: number;
  suffixLoss: number;
  teacher: number;
  teacherLoss: number;
  studentDistill: number;
  teacherDistill: number;
}
function latentShape(objective: Exclude<Objective, 'oracle'>): LatentShape {
  const L = LATENT;
  const cot = L.cotSteps * L.cotStepTokens;
  const tail = L.answerPrompt + L.answer + 1; // P A [eos]
  const cotLeft = objective === 'coconut' ? (L.cotSteps - L.coconutStage) * L.cotStepTokens : 0;
  const suffix = 1 + cotLeft + tail; // [eot] ...
  const teacher = L.prompt + cot + 1 + tail;
  return {
    prompt: L.prompt,
    latents: objective === 'coconut' ? L.coconutStage * L.latentsPerStep : L.codiLatents,
    suffix,
    suffixLoss: suffix - 1,
    teacher,
    teacherLoss: cot + 1 + tail,
    studentDistill: L.answerPrompt,
    teacherDistill: L.prompt + cot + L.answerPrompt,
  };
}

interface Result {
  case: string;
  tokensPerSec: number;
  msPerStep: number;
  peakRssMb: number;
  params: number;
}

async function modelFile(c: CaseSpec): Promise<BenchModel> {
  if (c.shape === 'tiny') return { model: join(sharedDir, 'golden', 'gguf', 'tiny-l3.f32.gguf'), head: null };
  if (c.shape === 'organism') return organismShapedModel(log);
  return llama1bShapedModel(c.type, log, c.objective === 'codi');
}

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
}

/** Runs in the child: one case, JSON on stdout. */
async function runCase(name: string): Promise<void> {
  const c = CASES.find((x) => x.name === name)!;
  const files = await modelFile(c);
  const model = await loadModel(files.model);
  const { nVocab, nEmbd } = model.info;
  const next = rng(11);
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(next() * Math.min(nVocab, 2000)));
  let trainer: { step(): Promise<number>; params(): number; dispose(): void };
  if (c.objective === 'oracle') {
    const examples: NativeTrainExample[] = Array.from({ length: c.batch }, () => {
      const tokens = ids(seq);
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
    trainer = { step: async () => (await tr.step(examples)).tokens, params: () => tr.info().trainableParams, dispose: () => tr.dispose() };
  } else {
    const sh = latentShape(c.objective);
    // labels[t] = ids[t] on the last `loss` positions (the target of the row before t), else -100
    const labelled = (x: Int32Array, loss: number) => x.map((id, t) => (t >= x.length - loss ? id : -100));
    const examples: NativeLatentExample[] = Array.from({ length: c.batch }, () => {
      const teacher = ids(sh.teacher);
      if (c.objective === 'lm') return { teacher, teacherLabels: labelled(teacher, sh.teacherLoss) };
      const suffix = ids(sh.suffix);
      const ex: NativeLatentExample = { prompt: ids(sh.prompt), suffix, suffixLabels: labelled(suffix, sh.suffixLoss) };
      if (c.objective === 'codi') Object.assign(ex, { teacher, teacherLabels: labelled(teacher, sh.teacherLoss), studentDistill: sh.studentDistill, teacherDistill: sh.teacherDistill });
      return ex;
    });
    const tr = new (native().NativeLatentTrainer)(
      model.nativeHandle,
      files.head,
      { objective: c.objective, mode: c.mode, latentSteps: sh.latents, threads, ...(c.mode === 'lora' ? { rank, alpha: 2 * rank, initSeed: 1 } : {}) },
      { lr: 1e-5, weightDecay: 0.01, maxGradNorm: 1 },
    );
    trainer = { step: async () => (await tr.step(examples)).tokens, params: () => tr.info().trainableParams, dispose: () => tr.dispose() };
  }
  await trainer.step(); // first step: page-ins and buffer growth
  let tokens = 0;
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) tokens += await trainer.step();
  const ms = performance.now() - t0;
  const r: Result = { case: name, tokensPerSec: (tokens / ms) * 1000, msPerStep: ms / steps, peakRssMb: peakRssMb(), params: trainer.params() };
  trainer.dispose();
  model.dispose();
  process.stdout.write(JSON.stringify(r) + '\n');
}

/** What train_torch.py builds for a case: the HF folder, its 1B shape, or the organism's shape as JSON. */
async function torchModel(c: CaseSpec): Promise<string> {
  if (c.shape === 'tiny') return join(sharedDir, 'golden', 'hf', 'tiny-llama3');
  if (c.shape === '1b-4l') return '1b-4l';
  const m = await loadModel((await modelFile(c)).model);
  const { nVocab, nEmbd, nLayer, nHead, nHeadKv, nFf } = m.info;
  m.dispose();
  return JSON.stringify({ nVocab, nEmbd, nLayer, nHead, nHeadKv, nFf });
}

/** lossRowsOnly: the output head on the loss rows only, as the engine runs it; else HF's default loss (every row). */
async function torchCase(c: CaseSpec, lossRowsOnly: boolean): Promise<Result | null> {
  if (!c.torch) return null;
  const script = join(benchRoot, 'bench', 'train_torch.py');
  const common = ['--model', await torchModel(c), '--threads', String(threads), '--steps', String(steps), '--rank', String(rank), '--batch', String(c.batch)];
  let caseArgs: string[];
  if (c.objective === 'oracle') caseArgs = ['--seq', String(seq), '--loss-tokens', String(lossTokens), ...(lossRowsOnly ? ['--loss-rows-only'] : [])];
  else {
    const sh = latentShape(c.objective);
    const kebab = (k: string) => k.replace(/[A-Z]/g, (x) => '-' + x.toLowerCase());
    caseArgs = ['--objective', c.objective, '--mode', c.mode, ...Object.entries(sh).flatMap(([k, v]) => [`--${kebab(k)}`, String(v)])];
  }
  const out = execFileSync('python3', [script, ...common, ...caseArgs], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return { case: c.name, ...(JSON.parse(out.trim().split('\n').pop()!) as Omit<Result, 'case'>) };
}

async function main(): Promise<void> {
  const at = args.indexOf('--case');
  if (at >= 0) return runCase(args[at + 1]);
  const wanted = process.env.BENCH_CASES ? process.env.BENCH_CASES.split(',') : CASES.map((c) => c.name);
  const withTorch = pythonHas('torch, peft');
  log(`lro-native bench:train: threads ${threads}, kernels ${native().cpuFeatures()}; oracle steps: batch ${batch} x ${seq} tokens (${lossTokens} loss tokens each), LoRA r ${rank} on all 7 matrices; latent steps: ${JSON.stringify(LATENT)}${withTorch ? '' : '; PyTorch + PEFT not found (pip install torch transformers peft), no ratio'}`);
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
        torch = await torchCase(c, false);
        // the latent steps' torch twin runs HF's loss (every row), as CODI's and Coconut's code does
        torchLossRows = c.objective === 'oracle' ? await torchCase(c, true) : null;
      } catch (e) {
        log(`torch ${c.name} failed: ${(e as Error).message}`);
      }
    }
    const ratio = torch ? ours.tokensPerSec / torch.tokensPerSec : null;
    const ratioLossRows = torchLossRows ? ours.tokensPerSec / torchLossRows.tokensPerSec : null;
    rows.push({ ours, torch, torchLossRows, ratio, ratioLossRows });
    if (!asJson) {
      const t = (r: Result) => `${r.tokensPerSec.toFixed(1).padStart(7)} tok/s peak RSS ${r.peakRssMb.toFixed(0).padStart(5)} MB`;
      const w = 21;
      const twin = c.mode === 'lora' ? 'torch+peft' : 'torch     ';
      console.log(`${c.name.padEnd(w)} ours          ${t(ours)}  (${ours.msPerStep.toFixed(0)} ms/step, ${ours.params} trained)`);
      if (torch) console.log(`${''.padEnd(w)} ${twin}    ${t(torch)}  (HF loss: head on every row)`);
      if (torchLossRows) console.log(`${''.padEnd(w)} ${twin}    ${t(torchLossRows)}  (head on the loss rows only)`);
      if (ratio !== null) console.log(`ratio ${c.name} ${ratio.toFixed(2)} vs HF loss${ratioLossRows !== null ? `, ${ratioLossRows.toFixed(2)} vs loss rows only` : ''} (ours / ${twin.trim()} tokens/s)`);
    }
  }
  if (asJson) console.log(JSON.stringify({ threads, kernels: native().cpuFeatures(), batch, seq, lossTokens, rank, rows }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
