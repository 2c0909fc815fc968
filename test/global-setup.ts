// Runs once before the suite: the CLI tests spawn dist/bin/lro-native.js, so recompile the
// TypeScript when dist/ is missing or older than its sources (the addon itself is not built here).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cliPath, projectRoot } from './helpers/paths.js';

function newestSource(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newestSource(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

export default function setup(): void {
  const src = Math.max(...['lib', 'bin'].map((d) => newestSource(join(projectRoot, d))));
  if (existsSync(cliPath) && statSync(cliPath).mtimeMs >= src) return;
  execFileSync(process.execPath, [join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: projectRoot,
    stdio: 'inherit',
  });
  execFileSync(process.execPath, [join(projectRoot, 'tools', 'bin-executable.mjs')], { cwd: projectRoot, stdio: 'inherit' });
}
