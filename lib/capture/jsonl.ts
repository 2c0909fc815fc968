// Prompt records from JSONL files (one JSON object a line; GSM8K's {"question", "answer"} works as is).
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { CaptureRecord } from './capture-manifest.js';
import { InputError } from '../core/errors.js';

export interface JsonlPromptOptions {
  /** The first of these string fields present on a line is its text. */
  fields?: readonly string[];
  /** Stop after this many records. */
  limit?: number;
}

export const DEFAULT_PROMPT_FIELDS = ['question', 'prompt'] as const;

async function* lines(path: string): AsyncGenerator<string> {
  try {
    await access(path);
  } catch {
    throw new InputError(`${path}: file not found`);
  }
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  try {
    yield* rl;
  } finally {
    rl.close();
  }
}

/**
 * Reads records lazily (memory does not grow with the file). A record's id is the line's "id"
 * field when it has one (string or number), otherwise its 0-based line index in the file, which
 * stays stable when the file is read again (resume). Blank lines are skipped.
 */
export async function* readPromptJsonl(path: string, options: JsonlPromptOptions = {}): AsyncGenerator<CaptureRecord> {
  const fields = options.fields ?? DEFAULT_PROMPT_FIELDS;
  const limit = options.limit ?? Infinity;
  if (limit <= 0) return;
  const wanted = fields.map((f) => JSON.stringify(f)).join(' or ');
  let index = -1;
  let yielded = 0;
  for await (const line of lines(path)) {
    index++;
    if (line.trim() === '') continue;
    const where = `${path}: line ${index + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new InputError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new InputError(`${where}: expected a JSON object`);
    const o = obj as Record<string, unknown>;
    const field = fields.find((f) => typeof o[f] === 'string');
    if (field === undefined) throw new InputError(`${where}: expected a string field ${wanted}`);
    let id = String(index);
    if (o.id !== undefined) {
      if ((typeof o.id !== 'string' && typeof o.id !== 'number') || String(o.id) === '')
        throw new InputError(`${where}: field "id" must be a non-empty string or a number`);
      id = String(o.id);
    }
    // A string "answer" rides along (GSM8K's worked solution ending in "#### X"): trace and eval grade against it.
    yield { id, text: o[field] as string, ...(typeof o.answer === 'string' ? { answer: o.answer } : {}) };
    if (++yielded >= limit) return;
  }
}

/** Non-blank lines of a file (up to limit): the record count for progress, without parsing. */
export async function countJsonlRecords(path: string, limit = Infinity): Promise<number> {
  let n = 0;
  for await (const line of lines(path)) {
    if (line.trim() !== '') n++;
    if (n >= limit) break;
  }
  return n;
}
