// What a task generator sees of one question and what it gives back. Generators are pure: every
// label comes from the trace line, the capture record, the dataset's worked solution or the
// extra runs make-tasks did (extras.ts), so a test can recompute it from the same inputs.
import type { CaptureRecordEntry } from '../capture/capture-manifest.js';
import type { Split } from './split.js';
import type { ProgramStep, TraceRecord } from './inputs.js';

/** Vectors of one example: main-sequence positions of one capture record at the example's layer. */
export interface VectorSpec {
  /** 'main': the question's own record in the capture folder; otherwise an extra record id (extras.ts). */
  record: 'main' | string;
  positions: number[];
}

export interface TaskDraft {
  /** Distinguishes a question's examples of one task and layer (part of the example id). */
  key: string;
  question: string;
  /** Short and checkable, with a leading space (the oracle format tokenises it on its own). */
  answer: string;
  vectors: VectorSpec;
  /** Task-specific provenance added to the example's source (step, kind, window, ...). */
  source?: Record<string, unknown>;
  /** What the model's own head reads from the vectors, as an answer: the logit-lens baseline. */
  readout?: string;
}

/** One tampered rerun of a question (a swap of two steps' inputs, or noise on one). */
export interface TamperRun {
  kind: 'swap' | 'noise';
  /** swap: the two steps; noise: the one step. */
  steps: number[];
  /** noise only: scale relative to the input's norm, and the seed. */
  scale?: number;
  seed?: number;
  /** The extra capture record holding this run's vectors. */
  record: string;
  answer: string;
}

/** The question rerun with one number changed. */
export interface CounterfactualRun {
  record: string;
  /** The number as written in the question, and what replaced it. */
  from: string;
  to: string;
  /** Index of the changed number among the question's numbers (0-based). */
  which: number;
  question: string;
  answer: string;
  /** Per layer (key: the layer), per step: 1 - cosine(step vector, same step of the rerun). */
  distance: Record<string, number[]>;
}

/** What the output head reads from one vector: its top token over the tokenizer's ids. */
export interface Readout {
  id: number;
  token: string;
}

/** Results of the model runs make-tasks adds to a trace (see extras.ts); null parts were not run. */
export interface QuestionExtras {
  id: string;
  /** Per layer (key: the layer): the readout of each latent step's vector. */
  readout: Record<string, Readout[]> | null;
  tamper: TamperRun[] | null;
  counterfactual: CounterfactualRun | null;
}

export interface QuestionData {
  id: string;
  split: Split;
  trace: TraceRecord;
  record: CaptureRecordEntry;
  /** Latent steps N. */
  nSteps: number;
  /** Main-sequence positions of latent steps 0..N-1: step s is where the s-th latent input was fed. */
  latentPositions: number[];
  /** The dataset's worked solution (GSM8K's answer field), when make-tasks was given --data. */
  solution: string | null;
  /** The dataset's program (the organism's ground truth: each operation and its result), when it has one. */
  program: ProgramStep[] | null;
  /** Latent steps per problem step, from the model's recipe metadata; null when the model records none. */
  latentsPerStep: number | null;
  extras: QuestionExtras | null;
  /** Positions of the main record that the capture holds at every selected layer. */
  captured: Set<number>;
}

export interface TaskContext {
  seed: number;
  /** A number in [0, 1) fixed by the seed and the key: deterministic choices without state. */
  rand(key: string): number;
  /** One of the wordings of a template, chosen by the key, with {name} filled from vars. */
  say(template: string, key: string, vars?: Record<string, string | number>): string;
  /** Text of token ids (special tokens render as nothing). */
  detokenize(ids: number[]): string;
  /** Per layer, the counterfactual threshold on 1 - cosine (from the training split's distances). */
  cfThreshold: Record<string, number>;
}

export interface TaskGenerator {
  name: string;
  /** One line for summaries and --help. */
  title: string;
  /** Only ever in val/test unless asked for: the answer is not something the model itself did. */
  evalOnly?: boolean;
  /** Labels from the dataset's ground truth (program) rather than from what the model did. */
  groundTruth?: boolean;
  /** The answer is a function of the vectors alone: the report fits a linear probe on it (eval-only tasks). */
  probe?: boolean;
  /** The label is the output head's own reading: excluded with --no-head-view. */
  leaksHead?: boolean;
  /** Extra model runs the task needs (make-tasks does them when the task is selected). */
  extras?: ('readout' | 'tamper' | 'counterfactual')[];
  /** Why this question gives no examples of the task (missing trace parts, ...), or undefined. */
  unavailable(q: QuestionData): string | undefined;
  generate(q: QuestionData, layer: number, ctx: TaskContext): TaskDraft[];
}
