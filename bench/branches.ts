// What batching the branches of a trace buys. One full trace per question (6 latent steps, zero /
// skip / noise ablation of every step, every early decode: 1 + 6 + 18 = 25 variants), three ways:
//   batched    the Reasoner: every variant a KV-cache sequence forked from the shared prefix,
//              all variants of a stage in one engine batch;
//   sequential the same engine, each variant run alone one after another (the prompt prefix
//              re-run every time, one sequence);
//   seed       no KV cache, as the seed's reference method: the whole sequence re-evaluated at
//              every latent and decode step of every variant;
//   torch seed the seed method as its users run it: PyTorch + HF transformers on the same model
//              (exported by export-hf), bench/branches_torch.py, when `import torch, transformers`
//              works (BENCH_TORCH=0 skips it); the first question only.
// On the demo model and a larger random model (width 512, 8 layers), GSM8K questions from
// $LRO_SHARED/data/gsm8k/test.jsonl (default ../shared). `npm run bench:branches -- --json`.
// Knobs: BENCH_QUESTIONS (3), BENCH_ANSWER_TOKENS (16), BENCH_THREADS (2), BENCH_MODELS
// (demo,wide), BENCH_SEED_QUESTIONS (questions the slow seed method runs; 1).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { benchRoot, pythonHas, sharedDir } from './bench-paths.js';
import { cacheDir, ensureDemoModel } from '../lib/engine/demo-model.js';
import { exportHf } from '../lib/engine/convert.js';
import { readPromptJsonl } from '../lib/capture/jsonl.js';
import { buildPrompt, LatentHead, type PromptFormat } from '../lib/reasoning/latent-head.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { native } from '../lib/core/native.js';
import { Reasoner, type AblationKind, type Intervention } from '../lib/reasoning/reasoner.js';
import type { Session } from '../lib/engine/session.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const threads = Number(process.env.BENCH_THREADS ?? 2);
const nQuestions = Number(process.env.BENCH_QUESTIONS ?? 3);
const maxAnswer = Number(process.env.BENCH_ANSWER_TOKENS ?? 16);
const models = (process.env.BENCH_MODELS ?? 'demo,wide').split(',');
// The seed method is ~100x slower than the others: by default it runs the first question only.
const seedQuestions = Number(process.env.BENCH_SEED_QUESTIONS ?? 1);
const N = 6;
const KINDS: AblationKind[] = ['zero', 'skip', 'noise'];
const log = (s: string) => process.stderr.write(s + '\n');

async function modelFiles(name: string): Promise<{ model: string; head: string; label: string }> {
  if (name === 'demo') {
    const d = await ensureDemoModel();
    return { model: d.model, head: d.latentHead, label: 'demo (width 128, 4 layers)' };
  }
  if (name !== 'wide') throw new Error(`BENCH_MODELS: unknown model "${name}" (demo, wide)`);
  const dir = join(cacheDir(), 'bench');
  mkdirSync(dir, { recursive: true });
  const model = join(dir, 'branches-512x8.gguf');
  const head = join(dir, 'branches-512x8.latent.gguf');
  if (!existsSync(model) || !existsSync(head)) {
    log(`generating ${model} ...`);
    await native().writeRandomLlama(model, {
      nEmbd: 512,
      nLayer: 8,
      nHead: 8,
      nHeadKv: 4,
      nFf: 1536,
      type: 'f32',
      seed: 11,
      weightStd: 0.1,
      name: 'bench branches 512x8 (random)',
      latentPath: head,
      latentSteps: N,
    });
  }
  return { model, head, label: 'random (width 512, 8 layers)' };
}

/** One variant of a trace: how many latent steps, and which step (if any) is ablated how. */
interface Variant {
  name: string;
  latents: number;
  ablation?: { kind: AblationKind; step: number };
}

function variants(): Variant[] {
  const out: Variant[] = [{ name: 'main', latents: N }];
  for (let j = 0; j < N; j++) out.push({ name: `early ${j}`, latents: j });
  for (const kind of KINDS) for (let t = 0; t < N; t++) out.push({ name: `${kind} ${t}`, latents: N, ablation: { kind, step: t } });
  return out;
}

// The Reasoner's ablation branches seed their noise with (seed * 1000003 + step); the lone runs match it.
function intervention(v: Variant): Intervention[] {
  if (!v.ablation) return [];
  const { kind, step } = v.ablation;
  return [kind === 'noise' ? { kind, step, scale: 1, seed: step >>> 0 } : { kind, step }];
}

async function batched(reasoner: Reasoner, q: string): Promise<Map<string, number[]>> {
  const r = await reasoner.reason(q, { latentSteps: N, earlyDecode: true, ablations: KINDS, maxAnswerTokens: maxAnswer, lensTopK: 10 });
  const out = new Map<string, number[]>();
  out.set('main', r.answerTokens);
  for (const e of r.earlyDecodes) if (e.latents < N) out.set(`early ${e.latents}`, e.answerTokens);
  for (const kind of KINDS) for (const a of r.ablations[kind] ?? []) out.set(`${kind} ${a.step}`, a.answerTokens);
  return out;
}

async function sequential(reasoner: Reasoner, q: string): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const v of variants()) {
    const r = await reasoner.reason(q, { latentSteps: v.latents, maxAnswerTokens: maxAnswer, lensTopK: 10, interventions: intervention(v) });
    out.set(v.name, r.answerTokens);
  }
  return out;
}

/** The seed's method: no cache; every step re-evaluates the whole sequence from position 0. */
async function seedMethod(model: Model, head: LatentHead, session: Session, table: Float32Array, q: string): Promise<Map<string, number[]>> {
  const d = model.info.nEmbd;
  const nVocab = model.info.nVocab;
  const hs = head.settings;
  const exclude = Int32Array.from(hs.excludeIds);
  const prompt = buildPrompt(model, hs, q, hs.promptFormat as PromptFormat);
  const row = (id: number) => table.subarray(id * d, (id + 1) * d);
  const out = new Map<string, number[]>();
  const full = async (rows: Float32Array[]) => {
    session.remove(0);
    const emb = new Float32Array(rows.length * d);
    rows.forEach((r, i) => emb.set(r, i * d));
    return session.eval({ embeddings: emb, positions: rows.map((_, i) => i), outputRows: 'last', logits: true, finalNorm: true });
  };
  for (const v of variants()) {
    const rows = prompt.map(row);
    let r = await full(rows);
    const fed: Float32Array[] = [];
    for (let t = 0; t < v.latents; t++) {
      let e = head.project(r.finalNorm!);
      const a = v.ablation;
      if (a && a.step === t) e = a.kind === 'noise' ? native().addScaledNoise(e, 1, t) : new Float32Array(d);
      else if (a && a.kind === 'skip' && a.step >= 1 && a.step + 1 === t) e = fed[a.step - 1];
      fed.push(e);
      rows.push(e);
      r = await full(rows);
    }
    rows.push(row(hs.eotId));
    const answer: number[] = [];
    for (let i = 0; i < maxAnswer; i++) {
      r = await full(rows);
      const id = native().sampleToken(r.logits!, 0, nVocab, { temperature: 0, topK: 0, topP: 1, seed: 0, step: i, exclude });
      if (model.isEog(id)) break;
      answer.push(id);
      rows.push(row(id));
    }
    out.set(v.name, answer);
  }
  return out;
}

/** The seed method in PyTorch on the model's export-hf folder (written once into the cache). */
function torchSeedMethod(model: Model, files: { model: string; head: string }, head: LatentHead, q: string): { ms: number; answers: Map<string, number[]> } {
  const hf = join(cacheDir(), 'bench', `${files.model.split('/').pop()!.replace(/\.gguf$/, '')}-hf`);
  if (!existsSync(join(hf, 'README.json'))) {
    rmSync(hf, { recursive: true, force: true });
    exportHf(files.model, hf, { latentHead: files.head });
  }
  const hs = head.settings;
  const d = model.info.nEmbd;
  // The engine's noise draw for step t, as a unit direction: addScaledNoise(e1, 1, t) - e1.
  const noiseDirections: Record<number, number[]> = {};
  for (let t = 0; t < N; t++) {
    const e1 = new Float32Array(d);
    e1[0] = 1;
    const r = native().addScaledNoise(e1, 1, t);
    r[0] -= 1;
    noiseDirections[t] = Array.from(r);
  }
  const eog: number[] = [];
  for (let id = 0; id < model.info.nVocab; id++) if (model.isEog(id)) eog.push(id);
  const dir = mkdtempSync(join(tmpdir(), 'lro-branches-'));
  try {
    const reqPath = join(dir, 'request.json');
    writeFileSync(
      reqPath,
      JSON.stringify({
        hf,
        prompt: buildPrompt(model, hs, q, hs.promptFormat as PromptFormat),
        variants: variants(),
        noiseDirections,
        maxAnswer,
        exclude: hs.excludeIds,
        eog,
        eot: hs.eotId,
        threads,
        lnEps: hs.layerNormEps,
      }),
    );
    const out = execFileSync('python3', [join(benchRoot, 'bench', 'branches_torch.py'), reqPath], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, HF_HUB_DISABLE_PROGRESS_BARS: '1', TRANSFORMERS_VERBOSITY: 'error' },
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { ms: number; answers: Record<string, number[]> };
    return { ms: r.ms, answers: new Map(Object.entries(r.answers)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function agree(a: Map<string, number[]>, b: Map<string, number[]>): number {
  let n = 0;
  for (const [k, v] of a) if (JSON.stringify(v) === JSON.stringify(b.get(k))) n++;
  return n;
}

interface Row {
  model: string;
  questions: number;
  promptTokens: number[];
  variants: number;
  batchedMs: number;
  sequentialMs: number;
  seedMs: number | null;
  seedQuestions: number;
  batchedMsOnSeedQuestions: number;
  sequentialVsBatched: number;
  seedVsBatched: number | null;
  sequentialAgree: string;
  seedAgree: string | null;
  /** the seed method in PyTorch + transformers, on the first question */
  torchSeedMs: number | null;
  torchSeedVsBatched: number | null;
  torchSeedAgree: string | null;
}

async function benchModel(name: string, questions: string[], withTorch: boolean): Promise<Row> {
  const files = await modelFiles(name);
  const model = await loadModel(files.model);
  const head = LatentHead.find(model, files.head)!;
  const session = model.createSession({ nCtx: 4096, threads });
  const reasoner = new Reasoner(model, head, session);
  // The token-embedding table, read once through the engine's embed hook (the seed method feeds embeddings only).
  const ids = Array.from({ length: model.info.nVocab }, (_, i) => i);
  const te = await session.eval({ tokens: ids, outputRows: 'all', logits: false, capture: ['embed'] });
  const table = te.captures.embed;
  session.remove(0);
  const row: Row = {
    model: files.label,
    questions: questions.length,
    promptTokens: [],
    variants: variants().length,
    batchedMs: 0,
    sequentialMs: 0,
    seedMs: null,
    seedQuestions: 0,
    batchedMsOnSeedQuestions: 0,
    sequentialVsBatched: 0,
    seedVsBatched: null,
    sequentialAgree: '',
    seedAgree: null,
    torchSeedMs: null,
    torchSeedVsBatched: null,
    torchSeedAgree: null,
  };
  let seqAgree = 0;
  let seedAgree = 0;
  let total = 0;
  let seedTotal = 0;
  try {
    await batched(reasoner, questions[0]); // warm the page cache and allocator
    for (const [qi, q] of questions.entries()) {
      row.promptTokens.push(buildPrompt(model, head.settings, q, head.settings.promptFormat as PromptFormat).length);
      let t0 = performance.now();
      const b = await batched(reasoner, q);
      const bMs = performance.now() - t0;
      row.batchedMs += bMs;
      t0 = performance.now();
      const s = await sequential(reasoner, q);
      row.sequentialMs += performance.now() - t0;
      seqAgree += agree(b, s);
      total += b.size;
      if (qi < seedQuestions) {
        t0 = performance.now();
        const sd = await seedMethod(model, head, session, table, q);
        row.seedMs = (row.seedMs ?? 0) + performance.now() - t0;
        row.seedQuestions++;
        row.batchedMsOnSeedQuestions += bMs;
        seedAgree += agree(b, sd);
        seedTotal += b.size;
      }
      if (qi === 0 && withTorch) {
        try {
          const ts = torchSeedMethod(model, files, head, q);
          row.torchSeedMs = ts.ms;
          row.torchSeedVsBatched = ts.ms / bMs;
          row.torchSeedAgree = `${agree(b, ts.answers)}/${b.size}`;
        } catch (e) {
          log(`  torch seed method failed: ${(e as Error).message}`);
        }
      }
      log(`  ${name} question ${qi + 1}/${questions.length} done`);
    }
  } finally {
    session.dispose();
    model.dispose();
  }
  row.sequentialVsBatched = row.sequentialMs / row.batchedMs;
  row.sequentialAgree = `${seqAgree}/${total}`;
  if (row.seedMs !== null) {
    row.seedVsBatched = row.seedMs / row.batchedMsOnSeedQuestions;
    row.seedAgree = `${seedAgree}/${seedTotal}`;
  }
  return row;
}

async function main() {
  const data = join(sharedDir, 'data', 'gsm8k', 'test.jsonl');
  if (!existsSync(data)) throw new Error(`GSM8K test set not found at ${data} (set LRO_SHARED to the shared data folder)`);
  const questions: string[] = [];
  for await (const r of readPromptJsonl(data, { limit: nQuestions })) questions.push(r.text!);
  log(`branches bench: ${questions.length} GSM8K questions, ${N} latents, ${variants().length} variants each, <= ${maxAnswer} answer tokens, threads ${threads}`);
  const withTorch = pythonHas('torch, transformers, safetensors');
  if (!withTorch) log('PyTorch + transformers not found (pip install torch transformers safetensors): no torch seed-method line');
  const rows: Row[] = [];
  for (const m of models) {
    const r = await benchModel(m, questions, withTorch);
    rows.push(r);
    if (asJson) continue;
    const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    console.log(`${r.model}: ${r.questions} questions (prompts ${Math.min(...r.promptTokens)}-${Math.max(...r.promptTokens)} tokens), ${r.variants} variants each`);
    console.log(`  batched branches (Reasoner)     ${sec(r.batchedMs).padStart(10)}   1.00x`);
    console.log(`  sequential, one variant at once ${sec(r.sequentialMs).padStart(10)}   ${r.sequentialVsBatched.toFixed(2)}x the batched time   (answers equal: ${r.sequentialAgree})`);
    if (r.seedMs !== null)
      console.log(
        `  seed method, no KV cache        ${sec(r.seedMs).padStart(10)}   ${r.seedVsBatched!.toFixed(2)}x the batched time on its ${r.seedQuestions} question(s)   (answers equal: ${r.seedAgree})`,
      );
    if (r.torchSeedMs !== null)
      console.log(
        `  seed method in PyTorch + HF     ${sec(r.torchSeedMs).padStart(10)}   ${r.torchSeedVsBatched!.toFixed(2)}x the batched time on the 1st question   (answers equal: ${r.torchSeedAgree})`,
      );
    console.log(`ratio ${m} sequential/batched ${r.sequentialVsBatched.toFixed(2)}`);
    if (r.seedVsBatched !== null) console.log(`ratio ${m} seed/batched ${r.seedVsBatched.toFixed(2)}`);
    if (r.torchSeedVsBatched !== null) console.log(`ratio ${m} torch-seed/batched ${r.torchSeedVsBatched.toFixed(2)}`);
  }
  if (asJson) console.log(JSON.stringify({ threads, latents: N, maxAnswerTokens: maxAnswer, kernels: native().cpuFeatures(), rows }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
