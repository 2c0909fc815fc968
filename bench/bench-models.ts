// The random models the benches share: Llama-3.2-1B's layer shapes (width 2048, ffn 8192,
// 32 heads / 8 kv heads, vocab 128256), 4 layers, one file per weight type, and the organism's
// shape with its tokenizer; generated once into the cache (deterministic: the same seed gives the
// same file). withHead: also a random CODI latent head beside the model (<model>.latent.gguf).
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { builtinModel, cacheDir } from '../lib/engine/demo-model.js';
import { native, type RandomLlamaSpec } from '../lib/core/native.js';
import { ORGANISM_RECIPE } from '../lib/organism/recipe.js';

export interface BenchModel {
  model: string;
  /** the CODI head sidecar, when asked for */
  head: string | null;
}

async function cached(name: string, spec: RandomLlamaSpec, withHead: boolean, log: (s: string) => void): Promise<BenchModel> {
  const dir = join(cacheDir(), 'bench');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.gguf`);
  const head = join(dir, `${name}.latent.gguf`);
  if (!existsSync(path) || (withHead && !existsSync(head))) {
    log(`generating ${path} ...`);
    await native().writeRandomLlama(path + '.tmp', { ...spec, ...(withHead ? { latentPath: head } : {}) });
    renameSync(path + '.tmp', path);
  }
  return { model: path, head: withHead ? head : null };
}

export async function llama1bShapedModel(type: string, log: (s: string) => void = () => undefined, withHead = false): Promise<BenchModel> {
  const spec = { nEmbd: 2048, nLayer: 4, nHead: 32, nHeadKv: 8, nFf: 8192, nVocab: 128256, type, seed: 7, weightStd: 0.02, name: 'bench llama-3.2-1b-shaped 4 layers (random)' };
  return cached(`llama1b-4l.${type}`, spec as RandomLlamaSpec, withHead, log);
}

/** The shipped organism's shape and tokenizer (ORGANISM_RECIPE.model), random weights, f32, with a CODI head. */
export async function organismShapedModel(log: (s: string) => void = () => undefined): Promise<BenchModel> {
  const { ropeBase, weightStd, ...shape } = ORGANISM_RECIPE.model;
  const spec = { ...shape, ropeBase, weightStd, type: 'f32', seed: 7, tokenizerFrom: builtinModel().model, name: 'bench organism-shaped (random)' };
  return cached('organism-shaped.f32', spec as RandomLlamaSpec, true, log);
}
