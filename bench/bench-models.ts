// The random models the benches share: Llama-3.2-1B's layer shapes (width 2048, ffn 8192,
// 32 heads / 8 kv heads, vocab 128256), 4 layers, one file per weight type, generated once into
// the cache (deterministic: the same seed gives the same file).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../lib/engine/demo-model.js';
import { native } from '../lib/core/native.js';

export async function llama1bShapedModel(type: string, log: (s: string) => void = () => undefined): Promise<string> {
  const dir = join(cacheDir(), 'bench');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `llama1b-4l.${type}.gguf`);
  if (!existsSync(path)) {
    log(`generating ${path} ...`);
    await native().writeRandomLlama(path, {
      nEmbd: 2048,
      nLayer: 4,
      nHead: 32,
      nHeadKv: 8,
      nFf: 8192,
      nVocab: 128256,
      type,
      seed: 7,
      weightStd: 0.02,
      name: 'bench llama-3.2-1b-shaped 4 layers (random)',
    });
  }
  return path;
}
