#!/usr/bin/env node
// Marks the package's command-line entry points (package.json "bin") executable. tsc writes them
// as plain files (mode 644), and `npx lro-native` in a checkout runs the file itself: without
// this the README's first command stops at "Permission denied".
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
for (const rel of bins) {
  const p = join(root, rel);
  if (!existsSync(p)) {
    console.error(`bin-executable: ${p} not found; compile the TypeScript first (npm run build:ts)`);
    process.exit(1);
  }
  if (process.platform !== 'win32') chmodSync(p, statSync(p).mode | 0o111);
}
