// The built-in default model: a tiny Llama with a CODI latent head, generated deterministically
// on first use. Its weights are RANDOM: it shows the whole path (reason, capture, trace) without a
// download, but its answers mean nothing.
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { native } from './native.js';

export const DEMO_MODEL_NAME = 'demo';
const DEMO_VERSION = 1;

export interface DemoModelPaths {
  model: string;
  latentHead: string;
}

export function cacheDir(): string {
  return process.env.LRO_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'lro-native');
}

/** Writes the demo model once (a few hundred kB) and returns its paths. */
export async function ensureDemoModel(): Promise<DemoModelPaths> {
  const dir = cacheDir();
  const model = join(dir, `demo-v${DEMO_VERSION}.gguf`);
  const latentHead = join(dir, `demo-v${DEMO_VERSION}.latent.gguf`);
  if (existsSync(model) && existsSync(latentHead)) return { model, latentHead };
  mkdirSync(dir, { recursive: true });
  await native().writeRandomLlama(model, {
    nEmbd: 128,
    nLayer: 4,
    nHead: 4,
    nHeadKv: 2,
    nFf: 384,
    type: 'f32',
    seed: 20261128,
    name: 'lro-native demo (random weights, not a trained model)',
    latentPath: latentHead,
    latentSteps: 6,
  });
  return { model, latentHead };
}

/** `demo` (or an empty value) names the built-in model; anything else is a path. */
export async function resolveModelPath(model: string | undefined): Promise<{ model: string; latentHead?: string }> {
  if (!model || model === DEMO_MODEL_NAME) return ensureDemoModel();
  return { model };
}
