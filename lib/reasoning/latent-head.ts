// The latent head of a CODI / Coconut model and the prompt formats its checkpoints were trained with.
import { existsSync } from 'node:fs';
import { native, type NativeLatentHead, type NativeLatentSettings } from '../core/native.js';
import type { Model } from '../engine/model.js';

export type LatentSettings = Omit<NativeLatentSettings, 'excludeIds'> & { excludeIds: number[] };
export type PromptFormat = 'codi-answer-only' | 'codi' | 'plain';

export class LatentHead {
  readonly settings: LatentSettings;
  private readonly handle: NativeLatentHead;

  private constructor(handle: NativeLatentHead) {
    this.handle = handle;
    const s = handle.settings();
    this.settings = { ...s, excludeIds: Array.from(s.excludeIds) };
  }

  /**
   * Finds the head of a model: an explicit sidecar path, else `<model>.latent.gguf` next to the
   * model, else the model file itself. Returns null when there is none.
   */
  static find(model: Model, path?: string): LatentHead | null {
    const addon = native();
    if (path) return new LatentHead(addon.loadLatentHead(model.nativeHandle, path)!);
    const sidecar = model.info.path.replace(/\.gguf$/i, '') + '.latent.gguf';
    if (sidecar !== model.info.path && existsSync(sidecar)) return new LatentHead(addon.loadLatentHead(model.nativeHandle, sidecar)!);
    const inside = addon.loadLatentHead(model.nativeHandle, null);
    return inside ? new LatentHead(inside) : null;
  }

  /** e = head(z) for each row of z ([n * nEmbd]). */
  project(z: Float32Array): Float32Array {
    return this.handle.project(z);
  }
}

/** Text of a question as cywinski/codi's test code feeds it: stripped, double spaces collapsed (one pass, as str.replace). */
export function normaliseQuestion(q: string): string {
  return q.trim().split('  ').join(' ');
}

/**
 * Prompt ids for a reasoning run. The last id is bot when the format has one.
 * - codi-answer-only: BOS + question + " Output only the answer and nothing else." + <|eot_id|> + bot
 * - codi: BOS + question + bot
 * - plain: BOS + question (+ bot when the head defines one)
 */
export function buildPrompt(model: Model, head: LatentSettings | null, question: string, format: PromptFormat): number[] {
  const bos = model.info.tokenizer.bos;
  const withBos = (ids: number[]) => (bos >= 0 ? [bos, ...ids] : ids);
  const bot = head?.botId ?? -1;
  const tail = bot >= 0 ? [bot] : [];
  switch (format) {
    case 'codi-answer-only': {
      const text = normaliseQuestion(question) + ' Output only the answer and nothing else.';
      const eot = model.tokenize('<|eot_id|>', { addBos: false, parseSpecial: true });
      if (eot.length !== 1)
        throw new Error("prompt format 'codi-answer-only' needs the token <|eot_id|> in the model's vocabulary (a Llama 3 tokenizer)");
      return [...withBos(model.tokenize(text, { addBos: false })), eot[0], ...tail];
    }
    case 'codi':
      return [...withBos(model.tokenize(normaliseQuestion(question), { addBos: false })), ...tail];
    case 'plain':
      return [...withBos(model.tokenize(question, { addBos: false })), ...tail];
  }
}
