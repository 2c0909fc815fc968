// The model organism's recipe: a small latent reasoner that lro-native trains itself on problems
// whose intermediate values are known. Steps, each resumable and skipped once its output exists:
//   1. data      seeded problems (train templates) -> data/train.jsonl
//   2. tokenizer a BPE learned on the training corpus -> vocab.gguf
//   3. init      a fresh, seeded Llama of the recipe's shape with that tokenizer and a CODI head
//   4. pretrain  the teacher task (LM objective: question, CoT, answer), full-parameter
//   5. codi      CODI distillation into latent steps, full-parameter, head trained
//   6. organism.gguf + organism.latent.gguf, the recipe and data seed in their metadata
// Deterministic for a seed and a thread count.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { InputError } from '../core/errors.js';
import { trainLatent, type TrainLatentProgress } from '../training/latent-train.js';
import { native } from '../core/native.js';
import { generateProblems, organismCorpus, type OrganismProblem } from './data.js';
import { trainOrganismTokenizer, writeTokenizerGguf } from './tokenizer.js';

export interface OrganismRecipe {
  version: 3;
  name: string;
  dataSeed: number;
  trainProblems: number;
  minSteps: number;
  maxSteps: number;
  vocabSize: number;
  /** Numbers 0..numberTokens are one token each (0: every digit its own token). */
  numberTokens: number;
  model: { nEmbd: number; nLayer: number; nHead: number; nHeadKv: number; nFf: number; ropeBase: number; weightStd: number };
  initSeed: number;
  latentSteps: number;
  pretrain: { steps: number; batchSize: number; lr: number; warmup: number };
  /** How the latents are trained after pretraining: CODI distillation, or Coconut's curriculum. */
  method: 'codi' | 'coconut';
  codi: { steps: number; batchSize: number; lr: number; warmup: number; distillFactor: number; refFactor: number };
  /**
   * Coconut: stage s = 1..stages replaces the first s CoT steps by s latent steps (identity head),
   * each stage from the last. latentTargets: latent step k's source row also predicts step k's
   * result (weight latentFactor), so that the latent carries the value rather than the answer prompt.
   */
  coconut: {
    stages: number;
    latentsPerStep: number;
    stepsPerStage: number;
    batchSize: number;
    lr: number;
    latentTargets: boolean;
    /** With latentTargets: the first latent of each step also predicts the step's operand (latent-data.ts). */
    operandTargets?: boolean;
    latentFactor: number;
    /** Then finalRuns runs of finalSteps more steps of the last stage, each a cosine decay from lr to 0 (0: none). */
    finalSteps: number;
    finalRuns: number;
    /** Feed e = scale x h with scale = the pretrained token embeddings' mean norm / the final norm's gain norm (lro.latent.scale). */
    scaleToEmbeddings: boolean;
  };
}

/**
 * The shipped organism's recipe (about 45 minutes on 2 cores). v3: twice the problems, 7,000
 * pretraining steps (the teacher's CoT gets 100 / 99 / 97% of 3-step problems' steps right),
 * the identity feed scaled to the token embeddings' norm, and each step's first latent also
 * trained to predict the step's operand.
 */
export const ORGANISM_RECIPE: OrganismRecipe = {
  version: 3,
  name: 'lro-native organism',
  dataSeed: 1,
  trainProblems: 80000,
  minSteps: 2,
  maxSteps: 4,
  vocabSize: 1024,
  numberTokens: 99,
  model: { nEmbd: 128, nLayer: 4, nHead: 4, nHeadKv: 4, nFf: 384, ropeBase: 10000, weightStd: 0.02 },
  initSeed: 1,
  latentSteps: 6,
  pretrain: { steps: 7000, batchSize: 16, lr: 2e-3, warmup: 0.03 },
  method: 'coconut',
  codi: { steps: 1500, batchSize: 16, lr: 1e-3, warmup: 0.03, distillFactor: 1, refFactor: 1 },
  coconut: { stages: 4, latentsPerStep: 2, stepsPerStage: 600, batchSize: 16, lr: 1e-3, latentTargets: true, operandTargets: true, latentFactor: 1, scaleToEmbeddings: true, finalSteps: 3000, finalRuns: 1 },
};

/** A minute's worth, for tests: the same path on a tiny model. */
export const QUICK_RECIPE: OrganismRecipe = {
  ...ORGANISM_RECIPE,
  name: 'lro-native organism (quick)',
  trainProblems: 400,
  vocabSize: 320,
  model: { ...ORGANISM_RECIPE.model, nEmbd: 64, nLayer: 2, nHead: 2, nHeadKv: 2, nFf: 128 },
  latentSteps: 3,
  pretrain: { steps: 30, batchSize: 8, lr: 3e-3, warmup: 0 },
  codi: { steps: 20, batchSize: 8, lr: 1e-3, warmup: 0, distillFactor: 1, refFactor: 1 },
  coconut: { stages: 2, latentsPerStep: 2, stepsPerStage: 10, batchSize: 8, lr: 1e-3, latentTargets: true, operandTargets: true, latentFactor: 1, scaleToEmbeddings: true, finalSteps: 5, finalRuns: 1 },
};

export interface OrganismTrainOptions {
  out: string;
  quick?: boolean;
  /** Override the recipe (tests, experiments). */
  recipe?: OrganismRecipe;
  threads?: number;
  resume?: boolean;
  signal?: AbortSignal;
  onProgress?: (stage: string, p?: TrainLatentProgress) => void;
}

export interface OrganismTrainSummary {
  out: string;
  model: string;
  head: string;
  recipe: OrganismRecipe;
  pretrainLoss: number | null;
  codiLoss: number | null;
  elapsedMs: number;
}

/**
 * The feed scale that puts e = scale x final_norm(h) at the token embeddings' norm: the mean row
 * norm of token_embd over the norm of output_norm's gain (final_norm(h) has about that norm).
 */
/** GGUF metadata key of the recipe a trained organism records. */
export const RECIPE_METADATA_KEY = 'lro.organism.recipe';

/**
 * How many latent steps stand for one problem step in a model: the Coconut recipe's
 * latentsPerStep (latent k stands for step k / latentsPerStep), 1 for other models.
 */
export function latentsPerStepOf(metadata: Record<string, unknown>): number {
  const r = metadata[RECIPE_METADATA_KEY];
  if (typeof r !== 'string') return 1;
  const recipe = JSON.parse(r) as { method?: string; coconut?: { latentsPerStep?: number } };
  return recipe.method === 'coconut' ? (recipe.coconut?.latentsPerStep ?? 1) : 1;
}

export function embeddingScale(modelPath: string): number {
  const info = native().inspectGguf(modelPath);
  const bytes = readFileSync(modelPath);
  const f32 = (name: string): Float32Array => {
    const t = info.tensors.find((x) => x.name === name);
    if (!t || t.type !== 'f32') throw new InputError(`${modelPath}: tensor ${name} (f32) not found`);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + t.fileOffset, bytes.byteOffset + t.fileOffset + t.bytes));
  };
  const emb = f32('token_embd.weight');
  const gain = f32('output_norm.weight');
  const d = gain.length;
  const n = emb.length / d;
  let rows = 0;
  for (let r = 0; r < n; r++) rows += native().vectorStats(emb.subarray(r * d, (r + 1) * d), null).norm;
  return rows / n / native().vectorStats(gain, null).norm;
}

function jsonl(records: readonly OrganismProblem[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

export async function trainOrganism(o: OrganismTrainOptions): Promise<OrganismTrainSummary> {
  const recipe = o.recipe ?? (o.quick ? QUICK_RECIPE : ORGANISM_RECIPE);
  const out = resolve(o.out);
  const t0 = Date.now();
  const recipeFile = join(out, 'recipe.json');
  const recipeText = JSON.stringify(recipe, null, 1) + '\n';
  if (existsSync(recipeFile)) {
    if (!o.resume) throw new InputError(`${o.out} already holds an organism run; pass --resume to continue it, or choose another --out`);
    if (readFileSync(recipeFile, 'utf8') !== recipeText) throw new InputError(`--resume: ${recipeFile} holds another recipe; use another --out`);
  }
  mkdirSync(join(out, 'data'), { recursive: true });
  await writeFileAtomic(recipeFile, recipeText);
  const say = (stage: string, p?: TrainLatentProgress) => o.onProgress?.(stage, p);

  // 1. data
  const trainFile = join(out, 'data', 'train.jsonl');
  let train: OrganismProblem[] | null = null;
  if (!existsSync(trainFile)) {
    say('data');
    train = generateProblems({ seed: recipe.dataSeed, n: recipe.trainProblems, minSteps: recipe.minSteps, maxSteps: recipe.maxSteps, templates: 'train' });
    await writeFileAtomic(trainFile, jsonl(train));
  }
  // 2. tokenizer
  const vocab = join(out, 'vocab.gguf');
  if (!existsSync(vocab)) {
    say('tokenizer');
    train ??= readFileSync(trainFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as OrganismProblem);
    const tok = trainOrganismTokenizer(organismCorpus(train), { vocabSize: recipe.vocabSize, numberTokens: recipe.numberTokens });
    writeTokenizerGguf(vocab, tok, [{ key: 'general.name', type: 'string', value: `${recipe.name} tokenizer` }]);
  }
  // 3. init
  const init = join(out, 'init.gguf');
  if (!existsSync(init)) {
    say('init');
    const m = recipe.model;
    await native().writeRandomLlama(init + '.tmp', {
      ...m,
      seed: recipe.initSeed,
      unitNorms: true,
      tokenizerFrom: vocab,
      name: `${recipe.name} (init)`,
      latentPath: join(out, 'init.latent.gguf'),
      latentSteps: recipe.latentSteps,
    });
    renameSync(init + '.tmp', init);
  }
  const threads = o.threads ?? 0;
  const common = { data: trainFile, mode: 'full' as const, supervisePrompt: true, schedule: 'cosine' as const, clip: 1, weightDecay: 0.01, seed: recipe.initSeed, threads, saveEvery: 100 };
  // 4. pretrain: the teacher task
  const pre = join(out, 'pretrain');
  let pretrainLoss: number | null = null;
  if (!existsSync(join(pre, 'model.gguf'))) {
    const r = await trainLatent(
      {
        ...common,
        base: init,
        latentHead: join(out, 'init.latent.gguf'),
        out: pre,
        objective: 'lm',
        lr: recipe.pretrain.lr,
        warmup: recipe.pretrain.warmup,
        batchSize: recipe.pretrain.batchSize,
        steps: recipe.pretrain.steps,
        resume: existsSync(join(pre, 'run.json')),
        name: `${recipe.name} (pretrained teacher)`,
      },
      { signal: o.signal, onProgress: (p) => say('pretrain', p) },
    );
    pretrainLoss = r.loss;
  }
  // 5. CODI, or Coconut's curriculum
  const codi = join(out, 'codi');
  let codiLoss: number | null = null;
  const metadata = {
    [RECIPE_METADATA_KEY]: JSON.stringify(recipe),
    'lro.organism.data_seed': String(recipe.dataSeed),
    'lro.organism.generator': 'lro-native organism data (lib/organism/data.ts)',
  };
  if (recipe.method === 'codi' && !existsSync(join(codi, 'model.gguf'))) {
    const r = await trainLatent(
      {
        ...common,
        base: join(pre, 'model.gguf'),
        latentHead: join(pre, 'model.latent.gguf'),
        out: codi,
        objective: 'codi',
        latentSteps: recipe.latentSteps,
        distillFactor: recipe.codi.distillFactor,
        refFactor: recipe.codi.refFactor,
        lr: recipe.codi.lr,
        warmup: recipe.codi.warmup,
        batchSize: recipe.codi.batchSize,
        steps: recipe.codi.steps,
        resume: existsSync(join(codi, 'run.json')),
        name: recipe.name,
        metadata,
      },
      { signal: o.signal, onProgress: (p) => say('codi', p) },
    );
    codiLoss = r.loss;
  }
  let last = codi;
  if (recipe.method === 'coconut') {
    // The identity head: a sidecar with the init head's ids and format, mode coconut, no tensors.
    const headFile = join(out, 'coconut.latent.gguf');
    if (!existsSync(headFile)) {
      const init = native().inspectGguf(join(out, 'init.latent.gguf'), 1 << 20).metadata;
      const ids = ['lro.latent.bot_id', 'lro.latent.eot_id', 'lro.latent.pad_id'].map((k) => Number(init[k]));
      native().writeGguf(headFile, [
        { key: 'general.architecture', type: 'string', value: 'llama' },
        { key: 'general.type', type: 'string', value: 'latent-head' },
        { key: 'general.name', type: 'string', value: `${recipe.name} latent head (coconut)` },
        { key: 'lro.latent.mode', type: 'string', value: 'coconut' },
        { key: 'lro.latent.steps', type: 'u32', value: recipe.coconut.stages * recipe.coconut.latentsPerStep },
        { key: 'lro.latent.bot_id', type: 'i32', value: ids[0] },
        { key: 'lro.latent.eot_id', type: 'i32', value: ids[1] },
        { key: 'lro.latent.pad_id', type: 'i32', value: ids[2] },
        { key: 'lro.latent.prompt_format', type: 'string', value: 'codi' },
        { key: 'lro.latent.layer_norm_eps', type: 'f32', value: 1e-5 },
        { key: 'lro.latent.exclude_ids', type: 'array:i32', value: [ids[2], ids[0], ids[1]] },
        ...(recipe.coconut.scaleToEmbeddings ? [{ key: 'lro.latent.scale', type: 'f32' as const, value: embeddingScale(join(pre, 'model.gguf')) }] : []),
      ], []);
    }
    let base = join(pre, 'model.gguf');
    let baseHead = headFile;
    // Stages 1..S at a constant LR, then (finalSteps > 0) more of stage S with a cosine decay.
    const runs = Array.from({ length: recipe.coconut.stages }, (_, i) => ({ stage: i + 1, dir: `coconut-${i + 1}`, steps: recipe.coconut.stepsPerStage, schedule: 'constant' as 'constant' | 'cosine' }));
    for (let i = 0; recipe.coconut.finalSteps > 0 && i < recipe.coconut.finalRuns; i++)
      runs.push({ stage: recipe.coconut.stages, dir: i === 0 ? 'coconut-final' : `coconut-final-${i + 1}`, steps: recipe.coconut.finalSteps, schedule: 'cosine' as const });
    for (const { stage: st, dir: name, steps, schedule } of runs) {
      const dir = join(out, name);
      if (!existsSync(join(dir, 'model.gguf'))) {
        const r = await trainLatent(
          {
            ...common,
            base,
            latentHead: baseHead,
            out: dir,
            objective: 'coconut',
            stage: st,
            latentsPerStep: recipe.coconut.latentsPerStep,
            latentTargets: recipe.coconut.latentTargets,
            operandTargets: recipe.coconut.operandTargets ?? false,
            latentFactor: recipe.coconut.latentFactor,
            lr: recipe.coconut.lr,
            warmup: 0,
            schedule,
            batchSize: recipe.coconut.batchSize,
            steps,
            resume: existsSync(join(dir, 'run.json')),
            name: recipe.name,
            metadata,
          },
          { signal: o.signal, onProgress: (p) => say(name.startsWith('coconut-final') ? `coconut stage ${st} (${name}, cosine)` : `coconut stage ${st}`, p) },
        );
        codiLoss = r.loss;
      }
      base = join(dir, 'model.gguf');
      baseHead = join(dir, 'model.latent.gguf');
      last = dir;
    }
  }
  // 6. the organism
  const model = join(out, 'organism.gguf');
  const head = join(out, 'organism.latent.gguf');
  copyFileSync(join(last, 'model.gguf'), model + '.tmp');
  renameSync(model + '.tmp', model);
  copyFileSync(join(last, 'model.latent.gguf'), head + '.tmp');
  renameSync(head + '.tmp', head);
  writeFileSync(join(out, 'DONE'), new Date().toISOString() + '\n');
  return { out, model, head, recipe, pretrainLoss, codiLoss, elapsedMs: Date.now() - t0 };
}
