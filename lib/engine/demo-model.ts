// The built-in default model: the model organism, a small latent reasoner that lro-native trained
// itself on word problems whose intermediate values are known (lib/organism/recipe.ts), shipped in
// models/ with the package. `--model demo` (or `organism`, or no --model) names it.
// The random demo generator stays for tests and bench shapes (ensureRandomDemoModel).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../core/package-root.js';
import { InputError } from '../core/errors.js';
import { native } from '../core/native.js';

export const DEMO_MODEL_NAME = 'demo';
export const ORGANISM_MODEL_NAME = 'organism';

/** Whether a --model value names the built-in model. */
export function isBuiltinModel(spec: string | undefined): spec is undefined | 'demo' | 'organism' {
  return !spec || spec === DEMO_MODEL_NAME || spec === ORGANISM_MODEL_NAME;
}

/** The shipped organism: <package>/models/organism.gguf and its latent head. */
export function builtinModel(): DemoModelPaths {
  const top = packageRoot();
  for (const root of top ? [top] : []) {
    const model = join(root, 'models', 'organism.gguf');
    const latentHead = join(root, 'models', 'organism.latent.gguf');
    if (existsSync(model) && existsSync(latentHead)) return { model, latentHead };
  }
  throw new InputError('the built-in model organism (models/organism.gguf) is missing from this installation; reinstall the package, or give --model');
}
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

/** The built-in model (the organism). */
export async function ensureDemoModel(): Promise<DemoModelPaths> {
  return builtinModel();
}

/** Writes the random demo model once (about 3.4 MB) and returns its paths: random weights, for shapes only. */
export async function ensureRandomDemoModel(): Promise<DemoModelPaths> {
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
  if (isBuiltinModel(model)) return ensureDemoModel();
  return { model };
}
