// Files named by their content: a run's identity holds the sha256 of its model, head and data, so a
// resume on another file of the same size (a merged model and its base) is refused.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(path)) h.update(b as Buffer);
  return h.digest('hex');
}

/**
 * A file's sha256 (a folder's: of its entries' names and hashes), computed once: cached under ~/.cache/lro-native/hashes by absolute path, size and
 * mtime, so a run's identity names a big model by its content without re-reading it every time.
 */
export async function contentHash(path: string): Promise<string> {
  const abs = resolve(path);
  const st = statSync(abs);
  // A folder (an HF checkpoint): its files' names and hashes, in name order.
  if (st.isDirectory()) {
    const h = createHash('sha256');
    for (const name of readdirSync(abs).sort()) h.update(`${name}\0${await contentHash(join(abs, name))}\n`);
    return h.digest('hex');
  }
  const key = createHash('sha256').update(`${abs}\0${st.size}\0${st.mtimeMs}`).digest('hex').slice(0, 32);
  const dir = join(process.env.LRO_CACHE_DIR ?? join(homedir(), '.cache', 'lro-native'), 'hashes');
  const file = join(dir, key + '.json');
  if (existsSync(file)) {
    try {
      const j = JSON.parse(readFileSync(file, 'utf8')) as { sha256?: unknown };
      if (typeof j.sha256 === 'string' && /^[0-9a-f]{64}$/.test(j.sha256)) return j.sha256;
    } catch {
      // a damaged cache entry: hash again
    }
  }
  const sha256 = await fileSha256(abs);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, JSON.stringify({ path: abs, size: st.size, mtimeMs: st.mtimeMs, sha256 }) + '\n');
  } catch {
    // an unwritable cache only costs a re-hash next time
  }
  return sha256;
}

/** What a capture's or trace's records came from, by content. */
export interface SourceIdentity {
  /** A file's absolute path, or a description ("--prompt"). */
  what: string;
  sha256: string;
}

/** A data file by content; `how` (which field is read, say) is part of the identity when given. */
export async function fileSource(path: string, how?: string): Promise<SourceIdentity> {
  const sha256 = await contentHash(path);
  if (how === undefined) return { what: resolve(path), sha256 };
  return { what: `${resolve(path)} (${how})`, sha256: createHash('sha256').update(`${sha256}\0${how}`).digest('hex') };
}

export function textSource(what: string, text: string): SourceIdentity {
  return { what, sha256: createHash('sha256').update(text).digest('hex') };
}
