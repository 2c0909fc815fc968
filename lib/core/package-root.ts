// The package's root folder (where package.json, models/ and the native binary live), found by
// walking up from this file: the sources (lib/core/) and the compiled package (dist/lib/core/)
// sit at different depths below it.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | null | undefined;

/** The folder of lro-native's package.json, or null when this file is not inside the package. */
export function packageRoot(): string | null {
  if (root !== undefined) return root;
  root = null;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        if ((JSON.parse(readFileSync(p, 'utf8')) as { name?: string }).name === 'lro-native') return (root = dir);
      } catch {
        // an unreadable package.json is not ours; keep walking up
      }
    }
    if (dirname(dir) === dir) return root;
  }
}
