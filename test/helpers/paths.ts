// Where the project and the shared golden data are. LRO_SHARED overrides the default ../shared.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedDir = process.env.LRO_SHARED ? resolve(process.env.LRO_SHARED) : resolve(projectRoot, '..', 'shared');
export const cliPath = join(projectRoot, 'dist', 'bin', 'lro-native.js');

/** Path of a file under shared/golden; fails loudly (not a silent skip) when the data are absent. */
export function golden(...parts: string[]): string {
  const p = join(sharedDir, 'golden', ...parts);
  if (!existsSync(p)) throw new Error(`golden file missing: ${p} (put the shared data beside the project or set LRO_SHARED)`);
  return p;
}

export function sharedFile(...parts: string[]): string {
  const p = join(sharedDir, ...parts);
  if (!existsSync(p)) throw new Error(`shared file missing: ${p} (set LRO_SHARED)`);
  return p;
}

export const GGUF_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k_m', 'q6_k'] as const;
export type GgufTypeName = (typeof GGUF_TYPES)[number];
export const PROMPTS = ['p12', 'p40', 'p75'] as const;

export const modelPath = (type: GgufTypeName): string => golden('gguf', `tiny-l3.${type}.gguf`);
