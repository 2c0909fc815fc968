// zod schemas for every option object that crosses the public API.
import { z } from 'zod';

export const LoadOptionsSchema = z
  .object({
    /** Load only the tokenizer (always true for vocab-only GGUF files). */
    vocabOnly: z.boolean().default(false),
  })
  .strict();
export type LoadOptions = z.input<typeof LoadOptionsSchema>;

export const SessionOptionsSchema = z
  .object({
    /** Most positions one sequence may hold in its KV cache. */
    nCtx: z.number().int().positive().max(1 << 20).default(4096),
    kvType: z.enum(['f32', 'f16']).default('f32'),
    /** Worker threads; 0 = physical cores. */
    threads: z.number().int().min(0).max(1024).default(0),
  })
  .strict();
export type SessionOptions = z.input<typeof SessionOptionsSchema>;

export const TokenizeOptionsSchema = z
  .object({
    addBos: z.boolean().default(true),
    parseSpecial: z.boolean().default(false),
  })
  .strict();
export type TokenizeOptions = z.input<typeof TokenizeOptionsSchema>;

export const SampleOptionsSchema = z
  .object({
    temperature: z.number().min(0).default(0),
    topK: z.number().int().min(0).default(0),
    topP: z.number().gt(0).max(1).default(1),
    seed: z.number().int().min(0).default(0),
  })
  .strict();
export type SampleOptions = z.input<typeof SampleOptionsSchema>;

export const GenerateOptionsSchema = SampleOptionsSchema.extend({
  maxTokens: z.number().int().min(0).default(32),
  addBos: z.boolean().default(true),
  parseSpecial: z.boolean().default(false),
  /** Stop at end-of-generation tokens (eos, eot, ...). */
  stopAtEog: z.boolean().default(true),
}).strict();
export type GenerateOptions = z.input<typeof GenerateOptionsSchema>;

/** Parses with a schema and rethrows zod's issues as one readable error naming the field. */
export function parseOptions<S extends z.ZodTypeAny>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
  throw new TypeError(`invalid ${what}: ${issues}`);
}
