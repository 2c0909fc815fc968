// Errors caused by the caller's input (a missing file, a bad option value, a malformed data line).
// The CLI prints these as one line without a stack trace; anything else is worth a bug report.
export class InputError extends Error {
  readonly code = 'ERR_LRO_INPUT';

  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** What a stopped (AbortSignal) operation throws, as Node's own aborts do. */
export function abortError(): Error {
  const e = new Error('eval cancelled');
  e.name = 'AbortError';
  (e as Error & { code: string }).code = 'ABORT_ERR';
  return e;
}

const FS_MESSAGES: Record<string, (path: string) => string> = {
  EEXIST: (p) => `cannot create the folder ${p}: a file of that name is in the way (choose another output, or remove the file)`,
  ENOTDIR: (p) => `${p}: a part of this path is a file, not a folder`,
  EISDIR: (p) => `${p} is a folder; a file was expected here`,
  EACCES: (p) => `permission denied: ${p}`,
  EPERM: (p) => `operation not permitted: ${p}`,
  EROFS: (p) => `${p} is on a read-only file system`,
  ENOSPC: (p) => `no space left on the device while writing ${p}; free some space and rerun (finished work is kept)`,
  EDQUOT: (p) => `disk quota exceeded while writing ${p}; free some space and rerun (finished work is kept)`,
  ENOENT: (p) => `not found: ${p}`,
};

/** A file-system error (Node's errno exceptions) said for a person, naming the path; null for other errors. */
export function fileSystemMessage(e: unknown): string | null {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err !== 'object' || typeof err.code !== 'string' || typeof err.path !== 'string') return null;
  const say = FS_MESSAGES[err.code];
  return say ? say(err.path) : null;
}

/** Names the file on a file-system error that lacks one (a failed write says only "write"). */
export function withPath(e: unknown, path: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err === 'object' && typeof err.code === 'string' && typeof err.path !== 'string') err.path = path;
  return e;
}
