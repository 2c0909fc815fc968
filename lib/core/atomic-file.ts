// Files written so that a reader (or a resumed run) never sees half of one.
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { withPath } from './errors.js';

/**
 * Writes through a temp file in the same folder (filled by `fill`), fsync and rename, so a reader
 * (or a crash) never sees half a file under the final name; the temp file goes on failure.
 */
export async function writeAtomically(path: string, fill: (fh: FileHandle, tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w');
  try {
    await fill(fh, tmp);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw withPath(e, path);
  }
  await fh.close();
  await rename(tmp, path);
}

/** Writes data through a temp file, fsync and rename (see writeAtomically). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeAtomically(path, (fh) => fh.writeFile(data));
}
