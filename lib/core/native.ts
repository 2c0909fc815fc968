// The whole native surface of the addon, typed by hand. Nothing else imports the binary.
import { createRequire } from 'node:module';
import { packageRoot } from './package-root.js';

export type TensorTypeName = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_K' | 'q6_K' | string;

export interface NativeTensorInfo {
  name: string;
  type: TensorTypeName;
  /** ggml order: shape[0] is the contiguous (row) length */
  shape: number[];
  bytes: number;
  /** where its data starts in the file */
  fileOffset: number;
}

export interface NativeTokenizerInfo {
  model: string; // "gpt2" (BPE) | "llama" (SentencePiece)
  pre: string;
  nTokens: number;
  bos: number;
  eos: number;
  eot: number; // -1 if none
  addBos: boolean;
  addEos: boolean;
}

export interface NativeModelInfo {
  path: string;
  ggufVersion: number;
  fileSize: number;
  /** How the file's bytes are held: 'mapped' (shared page cache) or 'copy' (private, huge pages; see LRO_WEIGHT_MEMORY). */
  weightMemory: 'mapped' | 'copy';
  architecture: string;
  name: string;
  vocabOnly: boolean;
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nFf: number;
  nRot: number;
  nCtxTrain: number;
  rmsEps: number;
  ropeFreqBase: number;
  hasRopeFreqs: boolean;
  tiedOutput: boolean;
  tensors: NativeTensorInfo[];
  tokenizer: NativeTokenizerInfo;
}

export type GgufMetadataValue = string | number | bigint | boolean | GgufMetadataValue[] | { arrayOf: string; length: number };

export interface NativeModel {
  info(): NativeModelInfo;
  /** Arrays longer than maxArray come back as {arrayOf, length}. */
  metadata(maxArray?: number): Record<string, GgufMetadataValue>;
  tokenize(text: string, addBos: boolean, parseSpecial: boolean): Int32Array;
  detokenize(ids: Int32Array, renderSpecial: boolean): string;
  tokenText(id: number): string;
  isEog(id: number): boolean;
  dispose(): void;
}

export interface NativeSessionOptions {
  nCtx: number;
  kvType: 'f32' | 'f16';
  threads: number; // 0: physical cores
}

/**
 * An edit of one batch row at a hook point, applied before anything reads it:
 * add: x += scale * vector; replace: x = vector; noise: x += scale * ||x|| * g / ||g|| (g ~ N(0, I), seeded);
 * inject: x += scale * ||x|| * vector / ||vector|| (the trainer's Activation Oracles injection, bit for bit).
 */
export type NativeEdit =
  | { point: string; row: number; mode: 'add'; vector: Float32Array; /** default 1 */ scale?: number }
  | { point: string; row: number; mode: 'inject'; vector: Float32Array; /** the injection coefficient; default 1 */ scale?: number }
  | { point: string; row: number; mode: 'replace'; vector: Float32Array }
  | { point: string; row: number; mode: 'noise'; scale: number; seed: number };

export interface NativeEvalRequest {
  tokens?: Int32Array; // [n]
  embeddings?: Float32Array; // [n * nEmbd]
  pos: Int32Array; // [n]
  seq: Int32Array; // [n]
  outputRows: Int32Array; // rows whose outputs and captures are returned, in this order
  logits: boolean;
  finalNorm: boolean;
  /** Hook points: embed, resid_pre.L, attn_out.L, resid_mid.L, mlp_out.L, resid_post.L, final_norm */
  capture?: string[];
  edits?: NativeEdit[];
  /** Arrays of earlier results to detach, their memory then holding this result's (others are left alone). */
  recycle?: Float32Array[];
}

export interface NativeEvalResult {
  logits?: Float32Array; // [outputRows, nVocab]
  finalNorm?: Float32Array; // [outputRows, nEmbd]
  captures: Record<string, Float32Array>; // each [outputRows, nEmbd]
}

export interface NativeSession {
  /** Rejects with an AbortError (code ABORT_ERR) when cancelled. */
  eval(req: NativeEvalRequest): Promise<NativeEvalResult>;
  cancel(): void;
  /** Replaces dst's cache by src's cells with positions in [p0, p1) (p1 < 0: unbounded). */
  seqCopy(src: number, dst: number, p0: number, p1: number): void;
  seqRemove(seq: number, p0: number, p1: number): void;
  seqPosMax(seq: number): number;
  threads(): number;
  /** LoRA adapters applied unmerged on later evals: y = W x + scale * (alpha / r) * B (A x). */
  setAdapters(adapters: { adapter: NativeAdapter; scale: number }[]): void;
  dispose(): void;
}

export interface NativeAdapterInfo {
  path: string;
  alpha: number;
  rank: number;
  weights: string[]; // base weight names the adapter touches
}

export interface NativeAdapter {
  info(): NativeAdapterInfo;
}

export interface GgufMetadataEntry {
  key: string;
  /** u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool string, or array:<type> */
  type: string;
  value: unknown;
}

export interface GgufTensorEntry {
  name: string;
  type: TensorTypeName;
  shape: number[]; // ggml order
  data: Uint8Array; // already in `type`
}

export interface NativeLatentSettings {
  path: string;
  mode: 'codi' | 'coconut';
  steps: number;
  botId: number;
  eotId: number;
  padId: number;
  promptFormat: string; // "codi-answer-only" | "codi" | "plain"
  layerNormEps: number;
  /** coconut: e = scale x h (lro.latent.scale; 1 in Coconut itself) */
  scale: number;
  hidden: number;
  excludeIds: Int32Array;
}

export interface NativeLatentHead {
  settings(): NativeLatentSettings;
  /** e = head(z), row by row: [n * nEmbd] -> [n * nEmbd] */
  project(z: Float32Array): Float32Array;
}

export interface NativeLogitStats {
  topIds: Int32Array;
  topLogits: Float32Array;
  topProbs: Float32Array; // softmax over ids [0, vocabLimit)
  logsumexp: number;
  entropy: number; // nats
}

export interface NativeVectorStats {
  norm: number;
  sparsity: number; // fraction of |x| < 1e-2 * max|x|
  cosineToPrev: number | null;
}

export interface SampleOptions {
  temperature: number;
  topK: number; // 0: all
  topP: number; // 1: all
  seed: number;
  step: number;
  exclude?: Int32Array;
}

export interface RandomLlamaSpec {
  nEmbd?: number;
  nLayer?: number;
  nHead?: number;
  nHeadKv?: number;
  nFf?: number;
  /** 0: the byte-level tokenizer's 262 ids */
  nVocab?: number;
  type?: TensorTypeName;
  seed?: number;
  /** 0: 1/sqrt(n_in) */
  weightStd?: number;
  name?: string;
  latentPath?: string;
  latentSteps?: number;
  /** copy this GGUF's tokenizer (and vocabulary size) instead of the byte-level one */
  tokenizerFrom?: string;
  ropeBase?: number;
  /** norms exactly 1 (a fresh model to train) */
  unitNorms?: boolean;
}

/** Progress of a conversion: stage "read" | "tensor" | "latent" (done of total units). */
export interface NativeConvertProgress {
  stage: string;
  done: number;
  total: number;
  item: string;
}

export interface NativeConvertHfOptions {
  type?: 'f32' | 'f16' | 'bf16' | 'q8_0';
  /** "" / absent: codi when the checkpoint holds the CODI projection prj.*; "none" writes no sidecar */
  latent?: 'codi' | 'coconut' | 'none';
  loraAlpha?: number;
  latentOut?: string;
  latentSteps?: number;
  /** a weights file in (or outside) the folder, or a *.index.json */
  weights?: string;
  tokenizerDir?: string;
  name?: string;
  padNames?: 'auto' | 'codi' | 'llama';
  /** tokenizer.ggml.pre override */
  pre?: string;
  /** tokenizer metadata only, no tensors (weights and config.json optional) */
  vocabOnly?: boolean;
  /** keep a LoRA checkpoint's LoRA unmerged: the base as is, the LoRA as a GGUF adapter (loraOut, default <out minus .gguf>.lora.gguf) */
  noMerge?: boolean;
  loraOut?: string;
  threads?: number;
  onProgress?: (p: NativeConvertProgress) => void;
}

export interface NativeConvertHfSummary {
  out: string;
  vocabOnly: boolean;
  latentOut: string | null;
  type: string;
  /** null when no weights were read (a vocab-only conversion of a folder without them) */
  sourceFormat: 'safetensors' | 'pytorch' | null;
  sourceFiles: string[];
  /** null when a vocab-only conversion found no config.json / base_config.json */
  configFile: string | null;
  tensors: number;
  params: number;
  bytes: number;
  nVocab: number;
  tokenizerSize: number;
  nLayer: number;
  nEmbd: number;
  tied: boolean;
  codi: boolean;
  pre: string;
  lora: { merged: number; rank: number; alpha: number; alphaSource: string | null; rslora: boolean; out: string | null };
  latent: { mode: 'codi' | 'coconut'; botId: number; eotId: number; padId: number; steps: number } | null;
  warnings: string[];
}

export interface NativeConvertAdapterOptions {
  /** base model config.json, its folder, or the model GGUF (head counts for the Q/K permutation) */
  baseConfig?: string;
  type?: 'f32' | 'f16' | 'bf16' | 'q8_0';
  name?: string;
  onProgress?: (p: NativeConvertProgress) => void;
}

export interface NativeConvertAdapterSummary {
  direction: 'peft->gguf' | 'gguf->peft';
  out: string;
  rank: number;
  alpha: number;
  ggufAlpha: number;
  rslora: boolean;
  pairs: number;
  permuted: number;
  targets: string[];
  baseConfig: string | null;
  warnings: string[];
}

/** LoRA layout: y = W x + scale * B (A dropout(x)), scale = alpha / rank (alpha / sqrt(rank) with rsLoRA). */
export interface NativeLoraConfig {
  /** default 8 */
  rank?: number;
  /** default 16 */
  alpha?: number;
  rslora?: boolean;
  /** on the LoRA input, as PEFT; default 0 */
  dropout?: number;
  /** q k v o gate up down (PEFT names q_proj ... also accepted); default all seven */
  targets?: string[];
  /** fresh init: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0 */
  initSeed?: number;
  /** start from a llama.cpp GGUF adapter, or a PEFT folder (converted on the way); its rank, alpha, targets win */
  initAdapter?: string;
}

/** AdamW (torch.optim.AdamW: decoupled decay), clip_grad_norm_, HF-style LR schedules. */
export interface NativeOptimConfig {
  /** default 1e-4 */
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** > 0: clip the global gradient norm to this; default 0 (off) */
  maxGradNorm?: number;
  schedule?: 'constant' | 'linear' | 'cosine';
  /** fraction of totalSteps, rounded up */
  warmupFraction?: number;
  /** needed by linear / cosine and warmup */
  totalSteps?: number;
}

export interface NativeTrainOptions {
  /** inject at the output of this block (0-based); -1: at the input embeddings. Default 1. */
  injectLayer?: number;
  /** h_p += coef * ||h_p|| * v / ||v|| (the term is a constant for backward); default 1 */
  injectCoef?: number;
  /** 'replace': h_p = the term instead of adding it */
  injectMode?: 'add' | 'replace';
  /** recompute each block in backward instead of storing its activations */
  recompute?: boolean;
  /** examples of a micro-batch share one pass up to this many tokens (0: one example per pass); default 4096 */
  packTokens?: number;
  /** rows per output-head chunk (0: auto) */
  ceChunkRows?: number;
  /** 0: physical cores */
  threads?: number;
  /** dropout stream */
  seed?: number;
}

/** One sequence, positions 0..n-1. Give labels (HF convention: labels[t] is the target of the logits at t-1, -100 = none) or lossMask (1: token t is a target). */
export interface NativeTrainExample {
  tokens: Int32Array;
  labels?: Int32Array;
  lossMask?: Uint8Array;
  /** rows that receive the injected vectors */
  injectPositions?: Int32Array;
  /** [injectPositions.length * nEmbd], not normalised */
  vectors?: Float32Array;
}

export interface NativeStepResult {
  /** sum over micro-batches of their pooled token-mean CE, divided by the number of micro-batches */
  loss: number;
  microLosses: number[];
  /** global L2 norm of the LoRA gradients before clipping */
  gradNorm: number;
  clipCoef: number;
  lr: number;
  tokens: number;
  lossTokens: number;
  /** optimizer steps done, this one included */
  step: number;
}

export interface NativeTrainerInfo {
  step: number;
  dataPosition: number;
  threads: number;
  rank: number;
  alpha: number;
  rslora: boolean;
  targets: string[];
  pairs: number;
  trainableParams: number;
}

export interface NativeTrainer {
  /** One optimizer step. microBatches: example indices per micro-batch (gradient accumulation); default one micro-batch of all. */
  step(examples: NativeTrainExample[], microBatches?: number[][]): Promise<NativeStepResult>;
  /** Pooled token-mean CE without gradients (injection applied, no dropout). */
  evalLoss(examples: NativeTrainExample[]): Promise<number>;
  /** llama.cpp GGUF LoRA adapter (q/k lora_b rows in the GGUF model's order). */
  saveAdapter(path: string, name?: string): void;
  /** A/B, AdamW moments, step, data position, dropout stream; atomic. Resuming from it is bit-identical. */
  saveCheckpoint(path: string): void;
  loadCheckpoint(path: string): void;
  setDataPosition(position: number): void;
  info(): NativeTrainerInfo;
  dispose(): void;
}

/** One latent-training example as ids; labels are aligned with their ids (labels[t]: the target of the row before t, -100 = none). */
export interface NativeLatentExample {
  /** [bos] q [bot]: the student's encoder (codi, coconut) */
  prompt?: Int32Array;
  /** what follows the latent steps: [eot] ... [eos] */
  suffix?: Int32Array;
  suffixLabels?: Int32Array;
  /** codi: the teacher's whole sequence (question, CoT, answer); lm: the sequence to model */
  teacher?: Int32Array;
  teacherLabels?: Int32Array;
  /** codi: index in suffix / teacher of the distillation token (the last token of the answer prompt) */
  studentDistill?: number;
  teacherDistill?: number;
  /** one target per latent step (-100 = none): the row the head reads for step k predicts it */
  latentLabels?: Int32Array;
}

export interface NativeLatentTrainConfig {
  objective?: 'codi' | 'coconut' | 'lm';
  mode?: 'lora' | 'full';
  /** codi: latent steps; coconut: the stage s */
  latentSteps?: number;
  distillFactor?: number;
  refFactor?: number;
  /** weight of the latent-target CE (examples with latentLabels); default 1 */
  latentFactor?: number;
  smoothL1Beta?: number;
  /** codi: train the projection head too (default true) */
  trainHead?: boolean;
  threads?: number;
  ceChunkRows?: number;
  /** lora mode: a fresh LoRA (rank, alpha, initSeed) or initAdapter (a llama.cpp GGUF adapter) */
  rank?: number;
  alpha?: number;
  initSeed?: number;
  initAdapter?: string;
}

export interface NativeLatentLoss {
  loss: number;
  ce: number;
  distill: number;
  refCe: number;
  latentCe: number;
  latentTokens: number;
  distillPerState: number[];
  ceTokens: number;
  refTokens: number;
  tokens: number;
}

export interface NativeLatentStepResult {
  loss: number;
  ce: number;
  distill: number;
  refCe: number;
  latentCe: number;
  gradNorm: number;
  clipCoef: number;
  lr: number;
  tokens: number;
  step: number;
  examples: NativeLatentLoss[];
}

export interface NativeLatentTrainerInfo {
  step: number;
  dataPosition: number;
  threads: number;
  objective: 'codi' | 'coconut' | 'lm';
  mode: 'lora' | 'full';
  latentSteps: number;
  tensors: number;
  trainableParams: number;
}

export interface NativeLatentTrainer {
  step(examples: NativeLatentExample[], microBatches?: number[][]): Promise<NativeLatentStepResult>;
  evalLosses(examples: NativeLatentExample[]): Promise<NativeLatentLoss[]>;
  /** The latest step's gradients in PyTorch shapes, q/k rows in HF order, checkpoint names (before clipping when kept). */
  gradients(): { name: string; shape: number[]; data: Float32Array }[];
  /** Keep each step's gradients before clipping for gradients() (twice the gradient memory). */
  keepPreclipGradients(on: boolean): void;
  /** full mode: the model GGUF (f32); lora mode: the adapter GGUF; metadata: extra string keys */
  saveModel(path: string, name?: string, metadata?: Record<string, string>): void;
  saveHead(path: string): void;
  saveCheckpoint(path: string): void;
  loadCheckpoint(path: string): void;
  setDataPosition(position: number): void;
  info(): NativeLatentTrainerInfo;
  dispose(): void;
}

export interface GgufInspection {
  path: string;
  ggufVersion: number;
  fileSize: number;
  metadata: Record<string, GgufMetadataValue>;
  tensors: NativeTensorInfo[];
}

export interface NativeAddon {
  loadModel(path: string, vocabOnly: boolean): Promise<NativeModel>;
  /** Metadata and tensor table of any GGUF file (adapter, latent head, model), validated; no tokenizer needed. */
  inspectGguf(path: string, maxArray?: number): GgufInspection;
  /** A llama.cpp-format GGUF LoRA adapter, checked against the model's shapes. */
  loadAdapter(model: NativeModel, path: string): NativeAdapter;
  NativeSession: new (model: NativeModel, options: NativeSessionOptions) => NativeSession;
  /** LoRA training on the frozen model (any weight type). */
  NativeTrainer: new (model: NativeModel, lora?: NativeLoraConfig, optim?: NativeOptimConfig, options?: NativeTrainOptions) => NativeTrainer;
  /** Training through the latent chain (CODI / Coconut / LM), LoRA or full-parameter; headPath: a latent-head GGUF or null. */
  NativeLatentTrainer: new (
    model: NativeModel,
    headPath: string | null,
    config?: NativeLatentTrainConfig,
    optim?: NativeOptimConfig,
  ) => NativeLatentTrainer;
  /** rowLength defaults to data.length; each row is quantised on its own. */
  quantize(type: TensorTypeName, data: Float32Array, rowLength?: number): Uint8Array;
  dequantize(type: TensorTypeName, data: Uint8Array, n: number): Float32Array;
  writeGguf(path: string, metadata: GgufMetadataEntry[], tensors: GgufTensorEntry[]): void;
  /** Greedy (lowest id on ties) when temperature <= 0; otherwise a draw that depends only on (seed, step). */
  sampleToken(logits: Float32Array, row: number, nVocab: number, options: SampleOptions): number;
  /** Sidecar file, or the model file itself when path is null (resolves null when it has no head). */
  loadLatentHead(model: NativeModel, path: string | null): NativeLatentHead | null;
  logitStats(logits: Float32Array, row: number, nVocab: number, vocabLimit: number, topK: number): NativeLogitStats;
  vectorStats(v: Float32Array, prev: Float32Array | null): NativeVectorStats;
  /** v + scale * ||v|| * g / ||g||, g ~ N(0, I) seeded */
  addScaledNoise(v: Float32Array, scale: number, seed: number): Float32Array;
  meanRows(x: Float32Array, width: number): Float32Array;
  /** A linear probe: ridge regression of one-hot labels on z-scored features; the predicted class of each test row. */
  ridgeClassify(xTrain: Float32Array, labels: Int32Array, xTest: Float32Array, width: number, nClasses: number, lambda: number): Int32Array;
  /** A deterministic random Llama GGUF (byte-level tokenizer), plus a CODI latent head sidecar when latentPath is set. */
  writeRandomLlama(path: string, spec: RandomLlamaSpec): Promise<void>;
  /** The engine's hook points in forward order (the one table of their names). */
  hookPoints(): { name: string; perLayer: boolean }[];
  cpuFeatures(): string;
  physicalCores(): number;
  /** The bench's ceilings on this machine: best-of-5 STREAM-style triad (GB/s) and register-only f32 FMA loop (GFLOP/s). */
  machineLimits(threads: number, triadMiB: number): { triadGBps: number; fmaGflops: number; int8Gops: number; bf16Gflops: number; threads: number };
  /** Hugging Face Llama folder (safetensors or torch zip; CODI checkpoints merged) -> GGUF, as llama.cpp's converter lays it out. */
  convertHf(dir: string, out: string, options: NativeConvertHfOptions): Promise<NativeConvertHfSummary>;
  /** GGUF Llama -> Hugging Face folder (config, f32 safetensors with HF q/k order, tokenizer.json; prj.* and README.json for a latent model). */
  exportHf(model: string, outDir: string, options?: { latentHead?: string }): { dir: string; files: string[]; tensors: number; latentMode: string | null };
  /** PEFT LoRA folder <-> llama.cpp GGUF LoRA adapter; the direction follows the input. */
  convertAdapter(input: string, out: string, options: NativeConvertAdapterOptions): Promise<NativeConvertAdapterSummary>;
}

let addon: NativeAddon | undefined;

/** Loads the binary from prebuilds/<platform>-<arch>/ or build/Release (node-gyp-build). */
export function native(): NativeAddon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  // An explicit binary (a debug or sanitizer build) wins over the packaged one.
  if (process.env.LRO_NATIVE_BINARY) {
    addon = require(process.env.LRO_NATIVE_BINARY) as NativeAddon;
    return addon;
  }
  const load = require('node-gyp-build') as (dir: string) => NativeAddon;
  const top = packageRoot();
  const roots = top ? [top] : [];
  let lastError: unknown;
  for (const root of roots) {
    try {
      addon = load(root);
      return addon;
    } catch (e) {
      lastError = e;
    }
  }
  throw new Error(
    `lro-native: no native binary found (looked in prebuilds/${process.platform}-${process.arch}/ and build/Release). ` +
      `Build it from source with \`npm run build:native\` (needs cmake and a C++17 compiler). Cause: ${String(lastError)}`,
  );
}
