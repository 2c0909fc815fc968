export { loadModel, Model, type ModelInfo, type GenerateResult } from './model.js';
export { Session, type EvalInput, type EvalOutput } from './session.js';
export type { LoadOptions, SessionOptions, TokenizeOptions, GenerateOptions, SampleOptions } from './options.js';
export { native } from './native.js';
export { InputError } from './errors.js';
export {
  capture,
  checkPointName,
  expandCapturePoints,
  readCaptureTensor,
  readCaptureTensorF32,
  LAYER_POINTS,
  MODEL_POINTS,
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
