// An inference session: KV caches of several sequences and the batched forward pass.
import { native, type NativeAdapter, type NativeEdit, type NativeModel, type NativeModelInfo, type NativeSession } from '../core/native.js';
import { parseOptions, SessionOptionsSchema, type SessionOptions } from '../core/options.js';
import { abortError } from '../core/errors.js';

export interface EvalInput {
  /** Token ids [n]; or */
  tokens?: ArrayLike<number>;
  /** Input embeddings [n * nEmbd] replacing the token-embedding lookup (the latent-loop path). */
  embeddings?: Float32Array;
  /** Positions [n]; default: continue each sequence after its last cached position. */
  positions?: ArrayLike<number>;
  /** Sequence ids [n]; default all 0. */
  seqIds?: ArrayLike<number>;
  /** Rows whose outputs are returned: indices, 'last' (default: last row of each sequence) or 'all'. */
  outputRows?: ArrayLike<number> | 'last' | 'all';
  logits?: boolean;
  finalNorm?: boolean;
  /** Hook points to capture at the output rows, e.g. ["resid_post.0", "final_norm"]. */
  capture?: string[];
  edits?: NativeEdit[];
  signal?: AbortSignal;
  /**
   * An earlier output (of any session) you are done with: its arrays are emptied (their buffers
   * detached, so every view of them reads as length 0) and their memory holds this output's. A loop
   * that samples from each token's logits and drops them should pass the previous output: fresh
   * memory for a 128k-vocabulary token's 0.5 MB of logits costs ~1.5 ms of page faults on a VM,
   * and JS frees dropped outputs only when it collects garbage.
   */
  recycle?: EvalOutput;
}

export interface EvalOutput {
  /** Batch rows the outputs belong to, in order. */
  rows: number[];
  logits?: Float32Array; // [rows, nVocab]
  finalNorm?: Float32Array; // [rows, nEmbd]
  captures: Record<string, Float32Array>; // [rows, nEmbd]
}

/** What a session needs of its model (a Model is one); narrow, so that this file imports no model.ts. */
export interface SessionModel {
  readonly info: NativeModelInfo;
  readonly nativeHandle: NativeModel;
}

function recycledArrays(o: EvalOutput): Float32Array[] {
  const arrays = [o.logits, o.finalNorm, ...Object.values(o.captures ?? {})];
  return arrays.filter((a): a is Float32Array => a instanceof Float32Array);
}

export class Session {
  readonly model: SessionModel;
  private handle: NativeSession | undefined;

  constructor(model: SessionModel, options: SessionOptions = {}) {
    const o = parseOptions(SessionOptionsSchema, options, 'session options');
    this.model = model;
    this.handle = new (native().NativeSession)(model.nativeHandle, o);
  }

  private get h(): NativeSession {
    if (!this.handle) throw new Error('session has been disposed');
    return this.handle;
  }

  get threads(): number {
    return this.h.threads();
  }

  async eval(input: EvalInput): Promise<EvalOutput> {
    const h = this.h;
    const width = this.model.info.nEmbd;
    const n = input.tokens ? input.tokens.length : input.embeddings ? input.embeddings.length / width : 0;
    if ((input.tokens === undefined) === (input.embeddings === undefined))
      throw new TypeError('eval: give exactly one of tokens or embeddings');
    if (input.tokens && n === 0) throw new TypeError('eval: tokens is empty (give at least one token id)');
    if (!Number.isInteger(n) || n <= 0)
      throw new TypeError(`eval: embeddings length must be a positive multiple of the model width ${width}`);
    const seq = Int32Array.from(input.seqIds ?? new Array<number>(n).fill(0));
    if (seq.length !== n) throw new TypeError(`eval: seqIds has ${seq.length} entries, expected ${n}`);
    let pos: Int32Array;
    if (input.positions) {
      pos = Int32Array.from(input.positions);
      if (pos.length !== n) throw new TypeError(`eval: positions has ${pos.length} entries, expected ${n}`);
    } else {
      pos = new Int32Array(n);
      const next = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const s = seq[i];
        const p = next.has(s) ? next.get(s)! : h.seqPosMax(s) + 1;
        pos[i] = p;
        next.set(s, p + 1);
      }
    }
    let rows: number[];
    const sel = input.outputRows ?? 'last';
    if (sel === 'all') rows = Array.from({ length: n }, (_, i) => i);
    else if (sel === 'last') {
      const last = new Map<number, number>();
      for (let i = 0; i < n; i++) last.set(seq[i], i);
      rows = [...last.values()].sort((a, b) => a - b);
    } else rows = Array.from(sel);
    if (input.signal?.aborted) throw abortError();
    const onAbort = () => h.cancel();
    input.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await h.eval({
        tokens: input.tokens ? Int32Array.from(input.tokens) : undefined,
        embeddings: input.embeddings,
        pos,
        seq,
        outputRows: Int32Array.from(rows),
        logits: input.logits ?? true,
        finalNorm: input.finalNorm ?? false,
        capture: input.capture,
        edits: input.edits,
        recycle: input.recycle ? recycledArrays(input.recycle) : undefined,
      });
      return { rows, logits: r.logits, finalNorm: r.finalNorm, captures: r.captures };
    } finally {
      input.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** LoRA adapters (native().loadAdapter) applied unmerged on later evals; [] removes them. */
  setAdapters(adapters: { adapter: NativeAdapter; scale?: number }[]): void {
    this.h.setAdapters(adapters.map((a) => ({ adapter: a.adapter, scale: a.scale ?? 1 })));
  }

  /** Makes dst a copy of src's cached positions [p0, p1) (the rest of dst is dropped). */
  fork(src: number, dst: number, p0 = 0, p1 = -1): void {
    this.h.seqCopy(src, dst, p0, p1);
  }

  /** Drops cached positions [p0, p1) of a sequence (default: all of it). */
  remove(seq: number, p0 = 0, p1 = -1): void {
    this.h.seqRemove(seq, p0, p1);
  }

  /** Largest cached position of a sequence, or -1. */
  posMax(seq = 0): number {
    return this.h.seqPosMax(seq);
  }

  cancel(): void {
    this.handle?.cancel();
  }

  dispose(): void {
    this.handle?.dispose();
    this.handle = undefined;
  }
}

