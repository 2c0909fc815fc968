// Pieces shared by train-oracle, ask and eval-oracle: the settings file written beside a trained
// adapter (so inference injects exactly as training did) and a seeded PRNG for data order and
// baselines.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { InputError } from '../core/errors.js';

export const ORACLE_SETTINGS_FILE = 'oracle.json';

/** What inference needs to know about how an oracle adapter was trained. */
export const OracleSettingsSchema = z
  .object({
    format: z.literal('lro-oracle'),
    version: z.literal(1),
    /** Injection at the output of this block (0-based); -1: at the input embeddings. */
    injectLayer: z.number().int().min(-1),
    injectCoef: z.number().positive(),
    base: z.object({ path: z.string(), name: z.string(), nEmbd: z.number().int().positive(), nLayer: z.number().int().positive() }),
    lora: z.object({ rank: z.number().int().positive(), alpha: z.number().positive(), rslora: z.boolean(), targets: z.array(z.string()) }),
    steps: z.number().int().nonnegative(),
    data: z.string(),
  })
  .passthrough();
export type OracleSettings = z.infer<typeof OracleSettingsSchema>;

/** The hook point where an injection at `injectLayer` happens at inference. */
export function injectPoint(injectLayer: number): string {
  // "embed" is the input of block 0, which is where the trainer injects for layer -1.
  return injectLayer < 0 ? 'embed' : `resid_post.${injectLayer}`;
}

/**
 * oracle.json for an adapter: inside a PEFT folder, or beside a .gguf file; null when there is none
 * (an adapter trained elsewhere).
 */
export function readOracleSettings(adapter: string): OracleSettings | null {
  let dir: string;
  try {
    dir = statSync(adapter).isDirectory() ? adapter : dirname(adapter);
  } catch {
    return null;
  }
  const path = join(dir, ORACLE_SETTINGS_FILE);
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const r = OracleSettingsSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InputError(`${path}: field '${issue.path.join('.') || '(root)'}': ${issue.message}`);
  }
  return r.data;
}
