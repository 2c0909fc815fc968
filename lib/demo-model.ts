// The built-in default model: a tiny Llama with a CODI latent head, generated deterministically
// on first use. Its weights are RANDOM: it shows the whole path (reason, capture, trace) without a
// download, but its answers mean nothing.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { native } from './native.js';

export const DEMO_MODEL_NAME = 'demo';
// v2: weights at std 0.2 instead of 1/sqrt(n_in); at the smaller std every answer repeated one
// token, so early decodes and ablations showed no differences at all.
const DEMO_VERSION = 2;

export interface DemoModelPaths {
  model: string;
  latentHead: string;
}

export function cacheDir(): string {
  return process.env.LRO_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'lro-native');
}

/** Writes the demo model once (about 3.4 MB) and returns its paths. */
export async function ensureDemoModel(): Promise<DemoModelPaths> {
  const dir = cacheDir();
  const model = join(dir, `demo-v${DEMO_VERSION}.gguf`);
  const latentHead = join(dir, `demo-v${DEMO_VERSION}.latent.gguf`);
  if (existsSync(model) && existsSync(latentHead)) return { model, latentHead };
  mkdirSync(dir, { recursive: true });
  // Written under temporary names and renamed: processes starting together (parallel test files,
  // two terminals) must never read a half-written file.
  const tag = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await native().writeRandomLlama(model + tag, {
      nEmbd: 128,
      nLayer: 4,
      nHead: 4,
      nHeadKv: 2,
      nFf: 384,
      type: 'f32',
      seed: 20261128,
      weightStd: 0.2,
      name: 'lro-native demo (random weights, not a trained model)',
      latentPath: latentHead + tag,
      latentSteps: 6,
    });
    renameSync(latentHead + tag, latentHead);
    renameSync(model + tag, model);
  } finally {
    rmSync(model + tag, { force: true });
    rmSync(latentHead + tag, { force: true });
  }
  return { model, latentHead };
}

/** `demo` (or an empty value) names the built-in model; anything else is a path. */
export async function resolveModelPath(model: string | undefined): Promise<{ model: string; latentHead?: string }> {
  if (!model || model === DEMO_MODEL_NAME) return ensureDemoModel();
  return { model };
}
