export { loadModel, Model, type ModelInfo, type GenerateResult } from './model.js';
export { Session, type EvalInput, type EvalOutput } from './session.js';
export type { LoadOptions, SessionOptions, TokenizeOptions, GenerateOptions, SampleOptions } from './options.js';
export { native } from './native.js';
export { InputError } from './errors.js';
export { patchSweep, PatchSweepOptionsSchema, type PatchSweepOptions, type PatchSweepResult, type PatchRun } from './patch-sweep.js';
export { invertLatent, InvertOptionsSchema, type InvertOptions, type InversionResult, type InversionCandidate } from './invert.js';
export { probeTasks, type ProbeCell, type ProbeResult } from './probe.js';
export { studyHtml, traceHtml } from './report-html.js';
export { runVariant, runInstruments, corruptFirstNumber, type VariantResult, type InstrumentsResult } from './study.js';
export { mergeShards, type MergeOptions, type MergeSummary } from './merge.js';
export { parseShard, resolveShard, shardOfId, shardPath, SHARD_PARTITION, type Shard, type ShardInfo } from './shard.js';
export { contentHash, fileSource, textSource, type SourceIdentity } from './content-hash.js';
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
} from './capture.js';
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
} from './capture-manifest.js';
export { readPromptJsonl, countJsonlRecords, DEFAULT_PROMPT_FIELDS, type JsonlPromptOptions } from './jsonl.js';
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
} from './safetensors.js';
export { ShardWriter, shardFileName, type WrittenShard } from './shard-writer.js';
export { CaptureSink, type CaptureSinkInit, type SinkTensor } from './capture-sink.js';
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
} from './reason.js';
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
} from './reasoner.js';
export { LatentHead, buildPrompt, normaliseQuestion, type LatentSettings, type PromptFormat } from './latent-head.js';
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
} from './trace.js';
export { evaluate, EvaluateOptionsSchema, type EvaluateOptions, type EvaluateProgress, type EvaluateSummary } from './evaluate.js';
export { goldAnswer, lastNumber, isCorrect } from './answers.js';
export { builtinModel, ensureDemoModel, ensureRandomDemoModel, cacheDir, DEMO_MODEL_NAME, ORGANISM_MODEL_NAME, type DemoModelPaths } from './demo-model.js';
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
} from './convert.js';
export { makeTasks, defaultLayers, MakeTasksOptionsSchema, type MakeTasksOptions, type MakeTasksSummary, type MakeTasksProgress } from './make-tasks.js';
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
} from './pipeline.js';
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
} from './oracle-data.js';
export {
  trainOracle,
  planRun,
  planEpoch,
  TrainOracleOptionsSchema,
  type TrainOracleOptions,
  type TrainOracleProgress,
  type TrainOracleSummary,
  type TrainOracleCallbacks,
} from './train-oracle.js';
export {
  askOracle,
  resolveVectors,
  OracleRunner,
  type AskOracleOptions,
  type AskOracleResult,
  type OracleVectorSource,
  type OracleQuery,
  type OracleAnswer,
} from './ask-oracle.js';
export { evalOracle, EvalOracleOptionsSchema, type EvalOracleOptions, type EvalOracleReport, type EvalOracleProgress } from './eval-oracle.js';
export { readOracleSettings, type OracleSettings } from './oracle-common.js';
