// The pipeline's config: its stages, the zod schema of config.json, and reading it (relative paths
// resolve against the config file's folder).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { PositionSelectorSchema } from '../capture/capture-manifest.js';
import { DEMO_MODEL_NAME, isBuiltinModel } from '../engine/demo-model.js';
import { InputError } from '../core/errors.js';
import { EvalOracleOptionsSchema } from '../oracle/eval-oracle.js';
import { MakeTasksOptionsSchema } from './make-tasks.js';
import { TASKS } from '../tasks/registry.js';
import { TrainOracleOptionsSchema } from '../oracle/train-oracle.js';

export const PIPELINE_STAGES = ['trace', 'capture', 'make-tasks', 'train-oracle', 'eval-oracle', 'variants', 'instruments', 'report'] as const;
export type PipelineStage = (typeof PIPELINE_STAGES)[number];

const int = z.number().int();

const TrainingSchema = TrainOracleOptionsSchema.omit({ base: true, data: true, val: true, out: true, resume: true, log: true, threads: true })
  .partial()
  .strict();
const EvalSchema = EvalOracleOptionsSchema.pick({ maxTokens: true, batchSize: true, bootstrap: true, limit: true }).partial().strict();
const TaskOptionsSchema = MakeTasksOptionsSchema.pick({ headView: true, trainEvalOnly: true, tamperNoise: true, cfThreshold: true }).partial().strict();

const VariantSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only (it names a folder)'),
    /** Training tasks of this variant (a subset of the run's tasks); default all trained tasks. */
    tasks: z.array(z.string().min(1)).min(1).optional(),
    /** Layers whose examples it trains and is evaluated on; default all. */
    layers: z.array(int.nonnegative()).min(1).optional(),
    loraR: int.positive().max(4096).optional(),
    loraAlpha: z.number().positive().finite().optional(),
  })
  .strict();

export const PipelineConfigSchema = z
  .object({
    /** Output folder (relative paths in the config resolve against the config file's folder). */
    out: z.string().min(1),
    /** A GGUF model with a latent head, or "demo" (the built-in random model). */
    model: z.string().min(1).default(DEMO_MODEL_NAME),
    latentHead: z.string().min(1).optional(),
    data: z
      .object({
        /** JSONL, one question a line ("question"/"prompt", or field); GSM8K as is. */
        path: z.string().min(1),
        field: z.string().min(1).optional(),
      })
      .strict(),
    limits: z
      .object({
        /** Questions read from the data (the first N). */
        questions: int.positive().optional(),
        latentSteps: int.min(0).max(4096).optional(),
        maxAnswerTokens: int.min(1).max(4096).default(16),
        /** Examples per task and question, over all layers (0: all). */
        maxPerQuestion: int.min(0).default(0),
      })
      .strict()
      .default({}),
    /** resid_post layers the vectors come from; default 25/50/75% of the depth. */
    layers: z.array(int.nonnegative()).min(1).optional(),
    /** Positions captured (kinds and/or indices); default all, which the lens tasks need. */
    positions: z.array(PositionSelectorSchema).min(1).optional(),
    dtype: z.enum(['f32', 'f16', 'bf16']).default('f32'),
    tasks: z.array(z.string().min(1)).min(1).default(['all']),
    split: z.tuple([z.number().min(0), z.number().min(0), z.number().min(0)]).default([0.8, 0.1, 0.1]),
    seed: int.min(0).default(0),
    trace: z
      .object({
        ablations: z.array(z.enum(['zero', 'skip', 'noise'])).default(['zero', 'skip', 'noise']),
        noiseScale: z.number().min(0).finite().default(1),
      })
      .strict()
      .default({}),
    taskOptions: TaskOptionsSchema.default({}),
    /** train-oracle options (lib/oracle/train-oracle.ts) other than the files. */
    training: TrainingSchema.default({}),
    /** eval-oracle options. */
    eval: EvalSchema.default({}),
    /** Baselines besides no-vectors and shuffled (those two always run). */
    baselines: z
      .object({
        /** The base model without the adapter on the problem text and the task question. */
        questionOnly: z.boolean().default(true),
        /** A linear probe per eval-only task, fitted on the training split's labels (lib/oracle/probe.ts). */
        probe: z.boolean().default(true),
        probeLambda: z.number().positive().finite().default(1e-2),
      })
      .strict()
      .default({}),
    /**
     * Recipe ablations: each variant trains its own oracle on a subset of the training examples
     * (tasks, layers) and/or another LoRA rank, and is evaluated on the same test examples.
     */
    variants: z.array(VariantSchema).default([]),
    /** Latent inversion and the causal map on the first test questions, for the HTML report. */
    instruments: z
      .object({
        /** Test questions whose latent steps are inverted (at the deepest captured layer). */
        invert: int.min(0).default(0),
        invertTokens: int.min(1).max(64).default(6),
        beam: int.min(1).max(64).default(8),
        /** Test questions patch-swept against a copy with their first number changed. */
        patchPairs: int.min(0).default(0),
      })
      .strict()
      .default({}),
    threads: int.min(0).max(1024).default(0),
  })
  .strict();
export type PipelineConfig = z.input<typeof PipelineConfigSchema>;
/** A validated config with absolute paths (readPipelineConfig / parsePipelineConfig). */
export type ResolvedPipelineConfig = z.output<typeof PipelineConfigSchema>;
type Config = ResolvedPipelineConfig;

/** Reads and validates a config file; relative paths become relative to its folder. */
export function readPipelineConfig(path: string): Config {
  if (!existsSync(path)) throw new InputError(`config file not found: ${path}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parsePipelineConfig(raw, path);
}

/** Validates a config object; relative paths resolve against the folder of `file` (default: the working directory). */
export function parsePipelineConfig(raw: unknown, file?: string): Config {
  const where = file ?? 'pipeline config';
  const r = PipelineConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InputError(`${where}: field '${issue.path.join('.') || '(root)'}': ${issue.message}`);
  }
  const c = r.data;
  const base = file === undefined ? process.cwd() : dirname(resolve(file));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const names = new Set(TASKS.map((t) => t.name));
  for (const t of c.tasks) if (t !== 'all' && !names.has(t)) throw new InputError(`${where}: field 'tasks': unknown task "${t}" (known: ${[...names].join(', ')})`);
  c.variants.forEach((v, i) => {
    for (const t of v.tasks ?? []) if (!names.has(t)) throw new InputError(`${where}: field 'variants.${i}.tasks': unknown task "${t}" (known: ${[...names].join(', ')})`);
  });
  const dup = c.variants.find((v, i) => c.variants.findIndex((w) => w.name === v.name) !== i);
  if (dup) throw new InputError(`${where}: field 'variants': the name "${dup.name}" is used twice`);
  const sum = c.split[0] + c.split[1] + c.split[2];
  if (Math.abs(sum - 1) > 1e-6) throw new InputError(`${where}: field 'split': fractions must sum to 1, got ${sum}`);
  return {
    ...c,
    out: abs(c.out),
    model: isBuiltinModel(c.model) ? c.model : abs(c.model),
    latentHead: c.latentHead === undefined ? undefined : abs(c.latentHead),
    data: { ...c.data, path: abs(c.data.path) },
  };
}

