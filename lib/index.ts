export { loadModel, Model, type ModelInfo, type GenerateResult } from './model.js';
export { Session, type EvalInput, type EvalOutput } from './session.js';
export type { LoadOptions, SessionOptions, TokenizeOptions, GenerateOptions, SampleOptions } from './options.js';
export { native } from './native.js';
