#!/usr/bin/env node
// Copies the compiled addon to prebuilds/<platform>-<arch>/, where node-gyp-build finds it when
// the package is installed without a build/ folder (from the npm tarball, no compiler needed).
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'build', 'Release', 'lro_native.node');
if (!existsSync(src)) {
  console.error(`copy-prebuild: ${src} not found; build it first with \`npm run build:native\``);
  process.exit(1);
}
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
// node-gyp-build ignores name parts that are not tags, so any *.node file in the folder loads.
const dst = join(dir, 'lro-native.node');
copyFileSync(src, dst);
console.log(`copy-prebuild: ${src} -> ${dst}`);
