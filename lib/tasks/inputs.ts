// make-tasks' inputs: trace lines (read, never rewritten: a trace in progress stays as it is) and
// the dataset's worked solutions. Errors name the file, the line and the field.
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { InputError } from '../core/errors.js';

const Decode = z.object({ answer: z.string(), answer_tokens: z.array(z.number().int()) }).passthrough();

export const TraceRecordSchema = z
  .object({
    id: z.string().min(1),
    question: z.string().nullable(),
    gold: z.string().nullable().optional(),
    prompt_tokens: z.array(z.number().int()).min(1),
    answer: z.string(),
    answer_tokens: z.array(z.number().int()),
    no_reasoning_answer: z.string().nullable().optional(),
    steps: z
      .array(
        z
          .object({
            step: z.number().int().min(0),
            top_k: z.array(z.object({ id: z.number().int(), token: z.string(), prob: z.number() }).passthrough()),
          })
          .passthrough(),
      )
      .min(1),
    early_decodes: z.array(Decode.extend({ latents: z.number().int().min(0) })).default([]),
    ablations: z.record(z.enum(['zero', 'skip', 'noise']), z.array(Decode.extend({ step: z.number().int().min(0) }))).default({}),
  })
  .passthrough();
export type TraceRecord = z.infer<typeof TraceRecordSchema>;

async function requireReadable(path: string, what: string): Promise<void> {
  try {
    await access(path);
  } catch {
    throw new InputError(`${what} not found: ${path}`);
  }
}

/**
 * Reads a trace file. A cut-off last line (a trace still being written, or killed mid-line) is
 * left out; any other bad line is an error naming it.
 */
export async function readTraceRecords(path: string): Promise<TraceRecord[]> {
  await requireReadable(path, 'trace file');
  const out: TraceRecord[] = [];
  const ids = new Set<string>();
  const rl = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let lineNo = 0;
  let pendingError: InputError | null = null;
  for await (const raw of rl) {
    lineNo++;
    if (pendingError) throw pendingError;
    if (raw.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      // Only the last line may be cut off; decide when we know whether another follows.
      pendingError = new InputError(`${path}:${lineNo}: not valid JSON; not a trace file?`);
      continue;
    }
    const r = TraceRecordSchema.safeParse(json);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new InputError(`${path}:${lineNo}: field '${issue.path.join('.') || '(root)'}': ${issue.message}`);
    }
    if (ids.has(r.data.id)) throw new InputError(`${path}:${lineNo}: id "${r.data.id}" appears twice`);
    ids.add(r.data.id);
    out.push(r.data);
  }
  return out;
}

/** One operation of a problem whose intermediate values are known (the organism's "program" field). */
export const ProgramStepSchema = z
  .object({
    op: z.enum(['+', '-', '*', '/']),
    operands: z.array(z.number().finite()).length(2),
    result: z.number().finite(),
    /** What the step counts ("marbles"). */
    quantity: z.string().min(1).optional(),
  })
  .passthrough();
export type ProgramStep = z.infer<typeof ProgramStepSchema>;

/** What a dataset says about one record beyond its question: its worked solution and its program. */
export interface DataFacts {
  solution: string | null;
  program: ProgramStep[] | null;
}

/**
 * Worked solutions ("answer", GSM8K's field) and programs ("program", the organism's ground truth)
 * of a JSONL dataset by record id (the "id" field, else the 0-based line index, as readPromptJsonl
 * numbers records); lines with neither are left out. A malformed program is an error naming the
 * line and the field, never a silently missing label.
 */
export async function readDataFacts(path: string): Promise<Map<string, DataFacts>> {
  await requireReadable(path, 'data file');
  const out = new Map<string, DataFacts>();
  const rl = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let index = -1;
  for await (const raw of rl) {
    index++;
    if (raw.trim() === '') continue;
    let o: unknown;
    try {
      o = JSON.parse(raw);
    } catch (e) {
      throw new InputError(`${path}: line ${index + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new InputError(`${path}: line ${index + 1}: expected a JSON object`);
    const rec = o as Record<string, unknown>;
    const id = rec.id !== undefined ? String(rec.id) : String(index);
    let program: ProgramStep[] | null = null;
    if (rec.program !== undefined) {
      const r = z.array(ProgramStepSchema).min(1).safeParse(rec.program);
      if (!r.success) {
        const issue = r.error.issues[0];
        throw new InputError(`${path}: line ${index + 1}: field 'program.${issue.path.join('.')}': ${issue.message}`);
      }
      program = r.data;
    }
    const solution = typeof rec.answer === 'string' ? rec.answer : null;
    if (solution !== null || program !== null) out.set(id, { solution, program });
  }
  return out;
}
