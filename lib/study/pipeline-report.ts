// What a pipeline run reports (report.json), read by report.md and report.html alike.
import type { ResolvedPipelineConfig, PipelineStage } from './pipeline-config.js';
import type { ProbeCell } from '../oracle/probe.js';
import type { VariantResult } from './study.js';

type Config = ResolvedPipelineConfig;

/** Accuracy and interval of one condition on one task (exact match of the trimmed answer). */
export interface ReportScore {
  n: number;
  accuracy: number | null;
  ci95: [number, number] | null;
}

export interface TaskReport {
  title: string;
  evalOnly: boolean;
  leaksHead: boolean;
  /** Labels from the dataset's program (ground truth), not from what the model did. */
  groundTruth: boolean;
  examples: { train: number; val: number; test: number };
  eval: {
    oracle: ReportScore;
    noVectors: ReportScore;
    shuffled: ReportScore;
    /** The output head's own reading of the vectors, where the task has one. */
    logitLens: ReportScore | null;
    /** The base model without the adapter, on the problem and the task question (baselines.questionOnly). */
    questionOnly: ReportScore | null;
    /** The linear probe fitted on the training split's labels (eval-only tasks whose answer the vectors alone decide). */
    probe: ReportScore | null;
    /** The oracle beats no-vectors and shuffled by more than their intervals (its lower bound above their upper bounds). */
    readsVectors: boolean;
    /** The same conditions, scored on the number in the answer (answers with a number only). */
    numeric: { oracle: ReportScore; noVectors: ReportScore; shuffled: ReportScore; logitLens: ReportScore | null } | null;
  } | null;
}

/** The seed's failure: how often the oracle answers a step's open question with the final answer. */
export interface SeedFailureRow {
  /** 'thinking': "What is the model thinking about?"; 'compute': "What does this step compute?" */
  asked: string;
  n: number;
  /** The oracle's answer holds the step's intermediate result (its last number). */
  intermediate: number;
  /** It holds the final answer instead. */
  final: number;
}

export interface VariantReport extends Omit<VariantResult, 'eval'> {
  /** Oracle exact-match accuracy per test task, with the interval. */
  scores: Record<string, ReportScore>;
  overall: ReportScore;
}

export interface PipelineReport {
  format: 'lro-pipeline-report';
  version: 2;
  createdAt: string;
  out: string;
  model: string;
  config: Config;
  stages: Record<PipelineStage, { elapsedMs: number | null; finishedAt: string | null }>;
  questions: { train: number; val: number; test: number };
  layers: number[];
  training: { steps: number; loss: number | null; valLoss: number | null; trainExamples: number; adapter: string | null };
  tasks: Record<string, TaskReport>;
  overall: TaskReport['eval'];
  /** Probe accuracy per task, layer and problem step (empty without probe-able tasks). */
  probe: ProbeCell[];
  seedFailure: SeedFailureRow[];
  variants: VariantReport[];
}

