export { loadModel, Model, type ModelInfo, type GenerateResult } from './engine/model.js';
export { Session, type EvalInput, type EvalOutput } from './engine/session.js';
export type { LoadOptions, SessionOptions, TokenizeOptions, GenerateOptions, SampleOptions } from './core/options.js';
export { native } from './core/native.js';
export { InputError } from './core/errors.js';
export { patchSweep, PatchSweepOptionsSchema, type PatchSweepOptions, type PatchSweepResult, type PatchRun } from './reasoning/patch-sweep.js';
export { invertLatent, InvertOptionsSchema, type InvertOptions, type InversionResult, type InversionCandidate } from './capture/invert.js';
export { probeTasks, type ProbeCell, type ProbeResult } from './oracle/probe.js';
export { studyHtml, traceHtml } from './study/report-html.js';
export { runVariant, runInstruments, corruptFirstNumber, type VariantResult, type InstrumentsResult } from './study/study.js';
export { mergeShards, type MergeOptions, type MergeSummary } from './study/merge.js';
export { parseShard, resolveShard, shardOfId, shardPath, SHARD_PARTITION, type Shard, type ShardInfo } from './core/shard.js';
export { contentHash, fileSource, textSource, type SourceIdentity } from './core/content-hash.js';
export {
  capture,
  checkPointName,
  expandCapturePoints,
  readCaptureTensor,
  readCaptureTensorF32,
  LAYER_POINTS,
  MODEL_POINTS,
  REASONING_POINTS,
  CaptureOptionsSchema,
  type CaptureOptions,
  type CaptureProgress,
  type CaptureRecord,
  type CaptureResult,
} from './capture/capture.js';
export {
  readCaptureManifest,
  writeCaptureManifest,
  CaptureManifestSchema,
  PositionSelectorSchema,
  CAPTURE_FORMAT,
  CAPTURE_VERSION,
  MANIFEST_FILE,
  type CaptureManifest,
  type CaptureRecordEntry,
  type CaptureTensor,
} from './capture/capture-manifest.js';
export { readPromptJsonl, countJsonlRecords, DEFAULT_PROMPT_FIELDS, type JsonlPromptOptions } from './capture/jsonl.js';
export {
  writeSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  readSafetensorsTensor,
  encodeSafetensorsHeader,
  DTYPE_BYTES,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsTensorData,
} from './core/safetensors.js';
export { ShardWriter, shardFileName, type WrittenShard } from './capture/shard-writer.js';
export { CaptureSink, type CaptureSinkInit, type SinkTensor } from './capture/capture-sink.js';
export {
  reason,
  reasonStream,
  meanLatentInputs,
  findLatentHead,
  requireLatentHead,
  POSITION_KINDS,
  type ReasonCallOptions,
  type ReasonStreamOptions,
  type ReasonProgress,
  type ReasonItem,
} from './reasoning/reason.js';
export {
  Reasoner,
  type ReasonOptions,
  type ReasonResult,
  type StepRecord,
  type LensEntry,
  type DecodeResult,
  type AblationResult,
  type AblationKind,
  type CapturedTensor,
  type Intervention,
  type PositionKind,
} from './reasoning/reasoner.js';
export { LatentHead, buildPrompt, normaliseQuestion, type LatentSettings, type PromptFormat } from './reasoning/latent-head.js';
export {
  trace,
  traceLine,
  readTraceFile,
  TraceOptionsSchema,
  type TraceOptions,
  type TraceLine,
  type TraceStep,
  type TraceProgress,
  type TraceSummary,
} from './capture/trace.js';
export { evaluate, EvaluateOptionsSchema, type EvaluateOptions, type EvaluateProgress, type EvaluateSummary } from './capture/evaluate.js';
export { goldAnswer, lastNumber, isCorrect } from './core/answers.js';
export { builtinModel, ensureDemoModel, ensureRandomDemoModel, cacheDir, DEMO_MODEL_NAME, ORGANISM_MODEL_NAME, type DemoModelPaths } from './engine/demo-model.js';
export {
  convertHf,
  convertAdapter,
  ConvertOptionsSchema,
  ConvertAdapterOptionsSchema,
  CONVERT_TYPES,
  type ConvertOptions,
  type ConvertAdapterOptions,
  type ConvertSummary,
  type ConvertAdapterSummary,
  type ConvertProgress,
} from './engine/convert.js';
export { makeTasks, defaultLayers, MakeTasksOptionsSchema, type MakeTasksOptions, type MakeTasksSummary, type MakeTasksProgress } from './study/make-tasks.js';
export { TASKS, TASK_NAMES, parseTaskList } from './tasks/registry.js';
export { assignSplits, type Split } from './tasks/split.js';
export type { TaskGenerator, TaskDraft, QuestionData, TaskContext } from './tasks/types.js';
export {
  runPipeline,
  readPipelineConfig,
  parsePipelineConfig,
  PipelineConfigSchema,
  PIPELINE_STAGES,
  type PipelineConfig,
  type ResolvedPipelineConfig,
  type PipelineReport,
  type PipelineResult,
  type PipelineStage,
} from './study/pipeline.js';
export {
  buildOracleInput,
  promptText,
  readOracleExamples,
  readOracleLines,
  VectorStore,
  OracleExampleSchema,
  VectorRefSchema,
  PLACEHOLDER,
  type OracleExample,
  type OracleInput,
  type VectorRef,
} from './oracle/oracle-data.js';
export {
  trainOracle,
  planRun,
  planEpoch,
  TrainOracleOptionsSchema,
  type TrainOracleOptions,
  type TrainOracleProgress,
  type TrainOracleSummary,
  type TrainOracleCallbacks,
} from './oracle/train-oracle.js';
export {
  askOracle,
  resolveVectors,
  OracleRunner,
  type AskOracleOptions,
  type AskOracleResult,
  type OracleVectorSource,
  type OracleQuery,
  type OracleAnswer,
} from './oracle/ask-oracle.js';
export { evalOracle, EvalOracleOptionsSchema, type EvalOracleOptions, type EvalOracleReport, type EvalOracleProgress } from './oracle/eval-oracle.js';
export { readOracleSettings, type OracleSettings } from './oracle/oracle-common.js';
