// The manifest of a capture folder: what was captured, from which model, and where each tensor lives.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { InputError } from './errors.js';

export const CAPTURE_FORMAT = 'lro-capture';
export const CAPTURE_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

const int = z.number().int();

export const CaptureTensorSchema = z
  .object({
    /** Shard file name, relative to the capture folder. */
    file: z.string().min(1),
    /** Tensor name inside the shard. */
    key: z.string().min(1),
    /** [positions, width], row-major. */
    shape: z.tuple([int.nonnegative(), int.positive()]),
    dtype: z.enum(['F32', 'F16', 'BF16']),
  })
  .strict();
export type CaptureTensor = z.infer<typeof CaptureTensorSchema>;

export const CaptureRecordEntrySchema = z
  .object({
    id: z.string().min(1),
    text: z.string().optional(),
    tokens: z.array(int.nonnegative()),
    /** Keyed by hook point name: logits, final_norm, embed, resid_post.3, ... */
    tensors: z.record(CaptureTensorSchema),
  })
  .strict();
export type CaptureRecordEntry = z.infer<typeof CaptureRecordEntrySchema>;

export const CaptureManifestSchema = z
  .object({
    format: z.literal(CAPTURE_FORMAT),
    version: z.literal(CAPTURE_VERSION),
    createdAt: z.string(),
    updatedAt: z.string(),
    /** false while a run is in progress or after an interrupted one (rerun with resume). */
    complete: z.boolean(),
    model: z.object({
      path: z.string(),
      name: z.string(),
      architecture: z.string(),
      fileSize: int.nonnegative(),
      nVocab: int.positive(),
      nEmbd: int.positive(),
      nLayer: int.positive(),
    }),
    settings: z.object({
      points: z.array(z.string().min(1)).min(1),
      dtype: z.enum(['f32', 'f16', 'bf16']),
      addBos: z.boolean(),
      parseSpecial: z.boolean(),
      batchSize: int.positive(),
      kvType: z.enum(['f32', 'f16']),
    }),
    shards: z.array(z.object({ file: z.string().min(1), bytes: int.nonnegative(), tensors: int.nonnegative() })),
    records: z.array(CaptureRecordEntrySchema),
  })
  .superRefine((m, ctx) => {
    const shards = new Set(m.shards.map((s) => s.file));
    const ids = new Set<string>();
    m.records.forEach((r, i) => {
      if (ids.has(r.id)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['records', i, 'id'], message: `duplicate record id "${r.id}"` });
      ids.add(r.id);
      for (const [point, t] of Object.entries(r.tensors)) {
        if (!shards.has(t.file))
          ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['records', i, 'tensors', point, 'file'], message: `"${t.file}" is not a listed shard` });
        if (t.shape[0] !== r.tokens.length)
          ctx.addIssue({
            code: z.ZodIssueCode.custom,
            path: ['records', i, 'tensors', point, 'shape'],
            message: `has ${t.shape[0]} positions but the record has ${r.tokens.length} tokens`,
          });
      }
    });
  });
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
export async function writeCaptureManifest(dir: string, manifest: CaptureManifest): Promise<void> {
  const path = join(dir, MANIFEST_FILE);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(formatManifest(manifest), 'utf8');
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
}
