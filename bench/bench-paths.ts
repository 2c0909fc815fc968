// What the benches share besides models: the package root, the shared data folder ($LRO_SHARED,
// default ../shared beside the project) and whether PyTorch can be asked for a ratio.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { packageRoot } from '../lib/core/package-root.js';

export const benchRoot: string = packageRoot() ?? resolve('.');
export const sharedDir: string = process.env.LRO_SHARED ? resolve(process.env.LRO_SHARED) : resolve(benchRoot, '..', 'shared');

/** Whether python3 imports these modules (comma list); BENCH_TORCH=0 says no without asking. */
export function pythonHas(modules: string): boolean {
  if (process.env.BENCH_TORCH === '0') return false;
  return spawnSync('python3', ['-c', `import ${modules}`], { stdio: 'ignore' }).status === 0;
}
