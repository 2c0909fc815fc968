// A loaded GGUF model: info, tokenizer and sessions.
import { native, type GgufMetadataValue, type NativeModel, type NativeModelInfo } from '../core/native.js';
import {
  GenerateOptionsSchema,
  LoadOptionsSchema,
  parseOptions,
  type GenerateOptions,
  type LoadOptions,
  type SessionOptions,
  type TokenizeOptions,
  TokenizeOptionsSchema,
} from '../core/options.js';
import { Session } from './session.js';

export type ModelInfo = NativeModelInfo;

export interface GenerateResult {
  promptTokens: number[];
  tokens: number[];
  text: string;
  stoppedAt: 'eog' | 'maxTokens';
}

export class Model {
  readonly info: ModelInfo;
  private handle: NativeModel | undefined;

  private constructor(handle: NativeModel) {
    this.handle = handle;
    this.info = handle.info();
  }

  /** @internal */
  static fromHandle(handle: NativeModel): Model {
    return new Model(handle);
  }

  /** @internal the native object, for Session */
  get nativeHandle(): NativeModel {
    if (!this.handle) throw new Error('model has been disposed');
    return this.handle;
  }

  metadata(maxArray = Number.MAX_SAFE_INTEGER): Record<string, GgufMetadataValue> {
    return this.nativeHandle.metadata(Math.min(maxArray, 0xffffffff));
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    const o = parseOptions(TokenizeOptionsSchema, options, 'tokenize options');
    return Array.from(this.nativeHandle.tokenize(text, o.addBos, o.parseSpecial));
  }

  detokenize(ids: ArrayLike<number>, options: { renderSpecial?: boolean } = {}): string {
    return this.nativeHandle.detokenize(Int32Array.from(ids), options.renderSpecial ?? false);
  }

  tokenText(id: number): string {
    return this.nativeHandle.tokenText(id);
  }

  isEog(id: number): boolean {
    return this.nativeHandle.isEog(id);
  }

  createSession(options: SessionOptions = {}): Session {
    return new Session(this, options);
  }

  /** Greedy (temperature 0) or seeded sampling from a text prompt, in a fresh session. */
  async generate(
    prompt: string | number[],
    options: GenerateOptions & { signal?: AbortSignal; onToken?: (id: number, index: number) => void; session?: SessionOptions } = {},
  ): Promise<GenerateResult> {
    const { signal, onToken, session: sessionOptions, ...rest } = options;
    const o = parseOptions(GenerateOptionsSchema, rest, 'generate options');
    const promptTokens = typeof prompt === 'string' ? this.tokenize(prompt, { addBos: o.addBos, parseSpecial: o.parseSpecial }) : prompt;
    if (promptTokens.length === 0) throw new TypeError('generate: the prompt is empty');
    const session = this.createSession({ nCtx: promptTokens.length + o.maxTokens + 1, ...sessionOptions });
    const tokens: number[] = [];
    let stoppedAt: GenerateResult['stoppedAt'] = 'maxTokens';
    try {
      let out = await session.eval({ tokens: promptTokens, signal });
      for (let i = 0; i < o.maxTokens; i++) {
        const id = native().sampleToken(out.logits!, 0, this.info.nVocab, { ...o, step: i });
        if (o.stopAtEog && this.isEog(id)) {
          stoppedAt = 'eog';
          break;
        }
        tokens.push(id);
        onToken?.(id, i);
        if (i + 1 < o.maxTokens) out = await session.eval({ tokens: [id], signal, recycle: out });
      }
    } finally {
      session.dispose();
    }
    return { promptTokens, tokens, text: this.detokenize(tokens), stoppedAt };
  }

  dispose(): void {
    this.handle?.dispose();
    this.handle = undefined;
  }
}

/** Loads a GGUF model (or a vocab-only GGUF for tokenizing). */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<Model> {
  const o = parseOptions(LoadOptionsSchema, options, 'load options');
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('loadModel: path must be a non-empty string');
  return Model.fromHandle(await native().loadModel(path, o.vocabOnly));
}
