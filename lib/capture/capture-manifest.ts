// The manifest of a capture folder: what was captured, from which model, and where each tensor lives.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { InputError } from '../core/errors.js';
import { writeFileAtomic } from '../core/atomic-file.js';

export const CAPTURE_FORMAT = 'lro-capture';
/** 2: reasoning records (question, latent placeholders, position kinds, answer), position selection. */
export const CAPTURE_VERSION = 2;
export const MANIFEST_FILE = 'manifest.json';

const int = z.number().int();

export const PositionKindSchema = z.enum(['prompt', 'bot', 'latent', 'eot', 'answer']);
/** A position selector: a kind, or a 0-based index into the record's main sequence. */
export const PositionSelectorSchema = z.union([PositionKindSchema, int.nonnegative()]);

export const CaptureTensorSchema = z
  .object({
    /** Shard file name, relative to the capture folder. */
    file: z.string().min(1),
    /** Tensor name inside the shard. */
    key: z.string().min(1),
    /** [positions, width], row-major. */
    shape: z.tuple([int.nonnegative(), int.positive()]),
    dtype: z.enum(['F32', 'F16', 'BF16']),
    /** Main-sequence positions of the rows, increasing; absent: every position of the record, in order. */
    positions: z.array(int.nonnegative()).optional(),
  })
  .strict();
export type CaptureTensor = z.infer<typeof CaptureTensorSchema>;

export const CaptureRecordEntrySchema = z
  .object({
    id: z.string().min(1),
    /** Plain records: the text that was tokenized. */
    text: z.string().optional(),
    /** Reasoning records: the question as given (the prompt adds the head's format around it). */
    question: z.string().optional(),
    /**
     * The main sequence: plain records, the tokens fed; reasoning records, prompt + one -1 per
     * latent step (an embedding was fed there) + eot + answer tokens.
     */
    tokens: z.array(int.min(-1)),
    /** Reasoning records: the kind of every position of tokens. */
    positionKinds: z.array(PositionKindSchema).optional(),
    latentSteps: int.nonnegative().optional(),
    answer: z.string().optional(),
    answerTokens: z.array(int.nonnegative()).optional(),
    /** End-of-generation token that ended the answer; null when the token limit did. */
    stopToken: int.nonnegative().nullable().optional(),
    /** The gold answer (the number after "####" in the data's answer), when the data had one. */
    gold: z.string().optional(),
    /** Keyed by hook point name: logits, final_norm, embed, resid_post.3, latent_proj, ... */
    tensors: z.record(CaptureTensorSchema),
  })
  .strict();
export type CaptureRecordEntry = z.infer<typeof CaptureRecordEntrySchema>;

export const ReasoningSettingsSchema = z
  .object({
    /** The latent-head file used (a sidecar, or the model file when the head is inside it). */
    latentHead: z.string(),
    mode: z.enum(['codi', 'coconut']),
    latentSteps: int.nonnegative(),
    format: z.enum(['codi-answer-only', 'codi', 'plain']),
    maxAnswerTokens: int.nonnegative(),
    temperature: z.number().min(0),
    seed: int.nonnegative(),
  })
  .strict();

const SettingsSchema = z
  .object({
    points: z.array(z.string().min(1)).min(1),
    dtype: z.enum(['f32', 'f16', 'bf16']),
    addBos: z.boolean(),
    parseSpecial: z.boolean(),
    batchSize: int.positive(),
    kvType: z.enum(['f32', 'f16']),
    /** Which positions were kept; null: all. */
    positions: z.array(PositionSelectorSchema).nullable(),
    /** The latent loop's settings; null for a plain capture (the records' tokens fed as they are). */
    reasoning: ReasoningSettingsSchema.nullable(),
  })
  .strict();

// Version 1 (plain captures only) is version 2 without position selection or reasoning.
function upgrade(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || (raw as { version?: unknown }).version !== 1) return raw;
  const m = raw as { settings?: unknown };
  const settings = typeof m.settings === 'object' && m.settings !== null ? { positions: null, reasoning: null, ...m.settings } : m.settings;
  return { ...m, version: CAPTURE_VERSION, settings };
}

const issue = (ctx: z.RefinementCtx, path: (string | number)[], message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });

export const CaptureManifestSchema = z.preprocess(
  upgrade,
  z
    .object({
      format: z.literal(CAPTURE_FORMAT),
      version: z.literal(CAPTURE_VERSION),
      createdAt: z.string(),
      updatedAt: z.string(),
      /** false while a run is in progress or after an interrupted one (rerun with resume). */
      complete: z.boolean(),
      model: z.object({
        /** Absolute, as the run saw it. */
        path: z.string(),
        /** The same file relative to the capture folder: found first, so a moved folder still finds a model moved with it. */
        relative: z.string().optional(),
        /** Content hash (sha256 of the file): a resume with another model is refused even when the sizes match. */
        sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
        name: z.string(),
        architecture: z.string(),
        fileSize: int.nonnegative(),
        nVocab: int.positive(),
        nEmbd: int.positive(),
        nLayer: int.positive(),
      }),
      settings: SettingsSchema,
      /** What the records came from and the latent head, by content (absent in older manifests). */
      inputs: z
        .object({
          latentHeadSha256: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
          source: z.object({ what: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).nullable(),
        })
        .strict()
        .optional(),
      shards: z.array(z.object({ file: z.string().min(1), bytes: int.nonnegative(), tensors: int.nonnegative() })),
      records: z.array(CaptureRecordEntrySchema),
    })
    .superRefine((m, ctx) => {
      const shards = new Set(m.shards.map((s) => s.file));
      const ids = new Set<string>();
      m.records.forEach((r, i) => {
        if (ids.has(r.id)) issue(ctx, ['records', i, 'id'], `duplicate record id "${r.id}"`);
        ids.add(r.id);
        const n = r.tokens.length;
        if (r.positionKinds) {
          if (r.positionKinds.length !== n) issue(ctx, ['records', i, 'positionKinds'], `has ${r.positionKinds.length} entries but the record has ${n} tokens`);
          r.tokens.forEach((t, p) => {
            if ((t === -1) !== (r.positionKinds![p] === 'latent'))
              issue(ctx, ['records', i, 'tokens', p], t === -1 ? 'is -1 at a position that is not a latent step' : `is ${t} at a latent position (expected -1)`);
          });
        } else {
          const p = r.tokens.indexOf(-1);
          if (p >= 0) issue(ctx, ['records', i, 'tokens', p], 'is -1, but the record has no positionKinds');
        }
        for (const [point, t] of Object.entries(r.tensors)) {
          const where = ['records', i, 'tensors', point];
          if (!shards.has(t.file)) issue(ctx, [...where, 'file'], `"${t.file}" is not a listed shard`);
          if (t.positions) {
            if (t.shape[0] !== t.positions.length) issue(ctx, [...where, 'shape'], `has ${t.shape[0]} rows but ${t.positions.length} positions`);
            t.positions.forEach((p, j) => {
              if (p >= n || (j > 0 && p <= t.positions![j - 1]))
                issue(ctx, [...where, 'positions', j], `${p} is not an increasing position below the record's ${n}`);
            });
          } else if (t.shape[0] !== n) issue(ctx, [...where, 'shape'], `has ${t.shape[0]} positions but the record has ${n} tokens`);
        }
      });
    }),
);
export type CaptureManifest = z.infer<typeof CaptureManifestSchema>;

/** Reads and validates DIR/manifest.json; the error names the file and the offending field. */
export async function readCaptureManifest(dir: string): Promise<CaptureManifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${path}: no capture manifest here` : `${path}: cannot read (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const r = CaptureManifestSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problems)` : '';
    throw new InputError(`${path}: ${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}${more}`);
  }
  return r.data;
}

// Readable top level, one line per record: token lists would otherwise take a line per id.
function formatManifest(m: CaptureManifest): string {
  const { records, ...head } = m;
  const top = JSON.stringify(head, null, 1);
  const body = records.map((r) => `  ${JSON.stringify(r)}`).join(',\n');
  return `${top.slice(0, -2)},\n "records": [${records.length ? `\n${body}\n ` : ''}]\n}\n`;
}

/** Replaces DIR/manifest.json atomically (temp file, fsync, rename). */
/**
 * The model file a manifest names, from the folder `dir` holding it: its relative path first (a
 * folder moved with its model), then the absolute one; null when neither exists.
 */
export function manifestModelPath(dir: string, model: CaptureManifest['model']): string | null {
  if (model.relative !== undefined) {
    const p = resolve(dir, model.relative);
    if (existsSync(p)) return p;
  }
  return existsSync(model.path) ? model.path : null;
}

export async function writeCaptureManifest(dir: string, manifest: CaptureManifest): Promise<void> {
  await writeFileAtomic(join(dir, MANIFEST_FILE), formatManifest(manifest));
}

export type { CaptureRecord } from '../reasoning/reason.js';
