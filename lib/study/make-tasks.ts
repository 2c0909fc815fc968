// make-tasks: oracle training examples from what the model itself did. Reads a trace file and the
// capture of the same runs, runs the extra model runs the selected tasks need (lib/tasks/extras.ts),
// splits the questions (never the examples) into train/val/test and writes one JSONL file per
// split in the oracle format (lib/oracle/oracle-data.ts), with vectors referenced into the capture's
// safetensors shards rather than copied, plus summary.json with the counts per task and split.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { manifestModelPath, readCaptureManifest, type CaptureManifest, type CaptureRecordEntry, type CaptureTensor } from '../capture/capture-manifest.js';
import { contentHash } from '../core/content-hash.js';
import { ensureDemoModel, isBuiltinModel } from '../engine/demo-model.js';
import { ShardRun, ShardSchema, shardInfoPath } from '../core/shard.js';
import { InputError } from '../core/errors.js';
import { LatentHead } from '../reasoning/latent-head.js';
import { loadModel, type Model } from '../engine/model.js';
import { writeFileAtomic } from '../core/atomic-file.js';
import type { OracleExample } from '../oracle/oracle-data.js';
import { parseOptions } from '../core/options.js';
import { checkRunIdentity } from '../training/train-run.js';
import { EXTRA_DIR, extrasManifest, pointOf, runExtras, type ExtraKind } from '../tasks/extras.js';
import { readDataFacts, readTraceRecords, type DataFacts, type TraceRecord } from '../tasks/inputs.js';
import { latentsPerStepOf, RECIPE_METADATA_KEY } from '../organism/recipe.js';
import { parseTaskList } from '../tasks/registry.js';
import { assignSplits, SPLITS, unitHash, type Split } from '../tasks/split.js';
import type { QuestionData, TaskContext, TaskGenerator } from '../tasks/types.js';
import { fill, templates } from '../tasks/wording.js';

const int = z.number().int();

/**
 * The training split's examples of the evaluation-only tasks, kept out of train.jsonl: the report's
 * linear probe is fitted on them (supervised, with labels the oracle never sees).
 */
export const PROBE_TRAIN_FILE = 'probe-train.jsonl';

export const MakeTasksOptionsSchema = z
  .object({
    traces: z.string().min(1),
    /** The capture folder of the same runs (manifest.json + shards). */
    capture: z.string().min(1),
    out: z.string().min(1),
    /** Task names, or ["all"]. */
    tasks: z.array(z.string().min(1)).min(1).default(['all']),
    /** Layers of resid_post vectors; default 25/50/75% of the depth. */
    layers: z.array(int.nonnegative()).min(1).optional(),
    split: z.tuple([z.number().min(0), z.number().min(0), z.number().min(0)]).default([0.8, 0.1, 0.1]),
    seed: int.min(0).default(0),
    /** The dataset (JSONL with GSM8K's "answer") for the evaluation-only solution tasks. */
    data: z.string().min(1).optional(),
    /** The model for the extra runs and the tokenizer: a GGUF path or "demo"; default the capture's model. */
    model: z.string().min(1).optional(),
    latentHead: z.string().min(1).optional(),
    /** At most this many examples per task and question, over all layers (0: no limit). */
    maxPerQuestion: int.min(0).default(0),
    /** false: tasks that leak the output head's view (logit_lens) stay out of train.jsonl. */
    headView: z.boolean().default(true),
    /** Also train on the evaluation-only tasks (never by default). */
    trainEvalOnly: z.boolean().default(false),
    /** Noise of the tamper reruns, relative to the input's norm. */
    tamperNoise: z.number().positive().finite().default(1),
    /** Counterfactual threshold on 1 - cosine; "median": the training split's median distance per layer. */
    cfThreshold: z.union([z.number().min(0).max(2), z.literal('median')]).default('median'),
    threads: int.min(0).max(1024).default(0),
    /** Replace task files of another run in out (refused without it). */
    overwrite: z.boolean().default(false),
    /**
     * Run only this shard's extra runs (see shard.ts) and stop: `merge` joins the shards' folders,
     * and make-tasks without a shard on the merged folder writes the splits.
     */
    shard: ShardSchema.optional(),
  })
  .strict();
export type MakeTasksOptions = z.input<typeof MakeTasksOptionsSchema>;

export type SplitCounts = Record<Split, number>;

export interface MakeTasksSummary {
  format: 'lro-tasks';
  version: 1;
  out: string;
  traces: string;
  capture: string;
  model: string;
  layers: number[];
  point: 'resid_post';
  seed: number;
  split: [number, number, number];
  files: Record<Split, string>;
  /** PROBE_TRAIN_FILE: the train split's eval-only examples (for the probe baseline only). */
  probeTrain: string;
  questions: SplitCounts;
  /** Question ids per split: the record of what was held out. */
  questionIds: Record<Split, string[]>;
  examples: Record<string, SplitCounts>;
  totals: SplitCounts;
  tasks: { name: string; title: string; evalOnly: boolean; leaksHead: boolean }[];
  /** Per task: why questions gave no examples, with the number of questions. */
  skipped: Record<string, Record<string, number>>;
  /** Eval-only (or head-view) examples kept out of train.jsonl. */
  withheldFromTrain: Record<string, number>;
  cfThreshold: Record<string, number> | null;
  /** A sharded run: its shard and the questions whose extra runs it made (no splits written). */
  shard?: { index: number; count: number; questions: number };
  warnings: string[];
}

export interface MakeTasksProgress {
  phase: 'extras' | 'generate' | 'write';
  done: number;
  skipped: number;
  total: number;
  elapsedMs: number;
}

/** 25, 50 and 75% of the depth (Activation Oracles' default), deduplicated. */
export function defaultLayers(nLayer: number): number[] {
  return [...new Set([0.25, 0.5, 0.75].map((f) => Math.min(nLayer - 1, Math.max(0, Math.round(nLayer * f)))))];
}

/** Two significant digits: the threshold is shown in the question, and the label uses what is shown. */
const round2 = (x: number) => Number(x.toPrecision(2));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The latent positions of a capture record, in step order. */
export function latentPositionsOf(r: CaptureRecordEntry): number[] {
  return (r.positionKinds ?? []).flatMap((k, p) => (k === 'latent' ? [p] : []));
}

function capturedPositions(r: CaptureRecordEntry, layers: number[]): Set<number> {
  let common: number[] | null = null;
  for (const l of layers) {
    const t = r.tensors[pointOf(l)];
    const ps: number[] = t.positions ?? Array.from({ length: t.shape[0] }, (_, i) => i);
    const have = new Set(ps);
    common = common === null ? ps : common.filter((p) => have.has(p));
  }
  return new Set(common ?? []);
}

function rowsOf(t: CaptureTensor, positions: readonly number[]): number[] | null {
  const rows: number[] = [];
  for (const p of positions) {
    const r = t.positions ? t.positions.indexOf(p) : p < t.shape[0] ? p : -1;
    if (r < 0) return null;
    rows.push(r);
  }
  return rows;
}

function context(seed: number, detokenize: (ids: number[]) => string, cfThreshold: Record<string, number>): TaskContext {
  return {
    seed,
    rand: (key) => unitHash(seed, key),
    say: (template, key, vars) => {
      const t = templates(template);
      return fill(t[Math.floor(unitHash(seed, `${template}\u0000${key}`) * t.length)], vars);
    },
    detokenize,
    cfThreshold,
  };
}

async function openModel(o: z.output<typeof MakeTasksOptionsSchema>, manifest: CaptureManifest, full: boolean): Promise<{ model: Model; head: LatentHead | null; path: string }> {
  let path = o.model ?? manifestModelPath(o.capture, manifest.model) ?? manifest.model.path;
  let headPath = o.latentHead ?? (o.model === undefined ? manifest.settings.reasoning?.latentHead : undefined);
  if (isBuiltinModel(path)) {
    const demo = await ensureDemoModel();
    path = demo.model;
    headPath = o.latentHead ?? demo.latentHead;
  }
  if (!existsSync(path))
    throw new InputError(`model not found: ${path}${o.model === undefined ? ` (named by ${join(o.capture, 'manifest.json')}; give --model)` : ''}`);
  const model = await loadModel(path, { vocabOnly: !full });
  const m = manifest.model;
  if (!full) return { model, head: null, path };
  for (const k of ['nEmbd', 'nLayer', 'nVocab'] as const)
    if (model.info[k] !== m[k]) {
      model.dispose();
      throw new InputError(`${path} is not the model of ${o.capture} (${k} ${model.info[k]} vs ${m[k]} in its manifest)`);
    }
  let head: LatentHead | null;
  try {
    head = LatentHead.find(model, headPath && existsSync(headPath) ? headPath : undefined);
  } catch (e) {
    model.dispose();
    throw new InputError(`latent head: ${(e as Error).message}`);
  }
  if (!head) {
    model.dispose();
    throw new InputError(`${path} has no latent head; give --latent-head`);
  }
  return { model, head, path };
}

const TASK_OUTPUTS = ['train.jsonl', 'val.jsonl', 'test.jsonl', PROBE_TRAIN_FILE, 'summary.json', EXTRA_DIR];

/**
 * OUT/run.json names the inputs and settings of the tasks in OUT by content. A rerun with the same
 * ones continues (the extra runs); other ones, or task files without a run.json, are refused
 * unless overwrite, which removes them first.
 */
async function claimTasksFolder(o: z.output<typeof MakeTasksOptionsSchema>, manifest: CaptureManifest): Promise<void> {
  const runFile = join(o.out, 'run.json');
  if (o.overwrite) for (const f of ['run.json', ...TASK_OUTPUTS]) await rm(join(o.out, f), { recursive: true, force: true });
  else if (!existsSync(runFile) && TASK_OUTPUTS.some((f) => existsSync(join(o.out, f))))
    throw new InputError(`${o.out} already holds task files of another run (and no run.json); pass --overwrite to replace them, or choose another --out`);
  const model = o.model !== undefined && !isBuiltinModel(o.model) && existsSync(o.model) ? await contentHash(o.model) : (o.model ?? manifest.model.sha256 ?? null);
  const identity = {
    traces: await contentHash(o.traces),
    capture: await contentHash(join(o.capture, 'manifest.json')),
    data: o.data ? await contentHash(o.data) : null,
    model,
    latentHead: o.latentHead && existsSync(o.latentHead) ? await contentHash(o.latentHead) : null,
    tasks: o.tasks,
    layers: o.layers ?? null,
    split: o.split,
    seed: o.seed,
    maxPerQuestion: o.maxPerQuestion,
    headView: o.headView,
    trainEvalOnly: o.trainEvalOnly,
    tamperNoise: o.tamperNoise,
    cfThreshold: o.cfThreshold,
  };
  mkdirSync(o.out, { recursive: true });
  await checkRunIdentity(runFile, 'lro-tasks-run', identity, {}, (d) => `${o.out} holds tasks made from other inputs or settings (${d}); pass --overwrite to replace them, or choose another --out`);
}

/** What a sharded make-tasks did: its questions' extra runs, no splits (those come after merge). */
function shardSummary(o: z.output<typeof MakeTasksOptionsSchema>, model: string, layers: number[], tasks: TaskGenerator[], questions: number, warnings: string[]): MakeTasksSummary {
  const zero = { train: 0, val: 0, test: 0 };
  return {
    format: 'lro-tasks',
    version: 1,
    out: o.out,
    traces: o.traces,
    capture: o.capture,
    model,
    layers,
    point: 'resid_post',
    seed: o.seed,
    split: o.split,
    files: { train: '', val: '', test: '' },
    probeTrain: '',
    questions: zero,
    questionIds: { train: [], val: [], test: [] },
    examples: {},
    totals: zero,
    tasks: tasks.map((t) => ({ name: t.name, title: t.title, evalOnly: t.evalOnly ?? false, leaksHead: t.leaksHead ?? false })),
    skipped: {},
    withheldFromTrain: {},
    cfThreshold: null,
    warnings,
    shard: { ...o.shard!, questions },
  };
}

/**
 * Writes OUT/train.jsonl, val.jsonl, test.jsonl and summary.json. Rerunning continues the extra
 * runs in OUT/extra and rewrites the example files (each atomically).
 */
export async function makeTasks(
  options: MakeTasksOptions,
  callbacks: { signal?: AbortSignal; onProgress?: (p: MakeTasksProgress) => void } = {},
): Promise<MakeTasksSummary> {
  const o = parseOptions(MakeTasksOptionsSchema, options, 'make-tasks options');
  const started = Date.now();
  const fractions = o.split;
  if (Math.abs(fractions[0] + fractions[1] + fractions[2] - 1) > 1e-6) throw new InputError(`split: fractions must sum to 1, got ${fractions.join(',')}`);
  const tasks = parseTaskList(o.tasks);
  const manifest = await readCaptureManifest(o.capture);
  const manifestPath = join(o.capture, 'manifest.json');
  if (!manifest.settings.reasoning) throw new InputError(`${manifestPath}: a plain capture; make-tasks needs a capture of the reasoning loop (a model with a latent head)`);
  const nLayer = manifest.model.nLayer;
  const layers = o.layers ?? defaultLayers(nLayer);
  for (const l of layers) {
    if (l >= nLayer) throw new InputError(`layer ${l} is out of range (the model has layers 0..${nLayer - 1})`);
    if (!manifest.settings.points.includes(pointOf(l))) {
      const have = manifest.settings.points.filter((p) => p.startsWith('resid_post.'));
      throw new InputError(
        `${manifestPath}: no ${pointOf(l)} captured (it has ${have.length ? have.join(', ') : 'no resid_post layers'}); capture that layer or choose --layers among these`,
      );
    }
  }
  const warnings: string[] = [];
  if (!manifest.complete) warnings.push(`${manifestPath} is not complete (an interrupted capture); only its listed records are used`);

  const traces = await readTraceRecords(o.traces);
  const byId = new Map(manifest.records.map((r) => [r.id, r]));
  const joined: { trace: TraceRecord; record: CaptureRecordEntry }[] = [];
  let notCaptured = 0;
  for (const t of traces) {
    const r = byId.get(t.id);
    if (!r) {
      notCaptured++;
      continue;
    }
    const n = t.steps.length - 1;
    if (r.latentSteps !== n)
      throw new InputError(`record "${t.id}": ${o.traces} has ${n} latent steps, ${manifestPath} has ${r.latentSteps ?? 'none'}; trace and capture must come from the same settings`);
    if (r.tokens.length < t.prompt_tokens.length || t.prompt_tokens.some((id, i) => r.tokens[i] !== id))
      throw new InputError(`record "${t.id}": the prompt tokens of ${o.traces} and ${manifestPath} differ; trace and capture must come from the same data and model`);
    for (const l of layers) if (!r.tensors[pointOf(l)]) throw new InputError(`${manifestPath}: record "${t.id}" has no ${pointOf(l)} tensor`);
    joined.push({ trace: t, record: r });
  }
  if (notCaptured) warnings.push(`${notCaptured} traced questions are not in the capture and were left out`);
  if (joined.length === 0) throw new InputError(`no question is in both ${o.traces} and ${manifestPath}`);
  const mismatched = joined.filter((j) => j.record.answer !== undefined && j.record.answer !== j.trace.answer).length;
  if (mismatched) warnings.push(`${mismatched} questions have another answer in the capture than in the trace; labels follow the trace`);

  const splitOf = assignSplits(
    joined.map((j) => j.trace.id),
    fractions,
    o.seed,
  );
  const facts = o.data ? await readDataFacts(o.data) : new Map<string, DataFacts>();
  if (o.data && ![...facts.values()].some((f) => f.solution !== null)) warnings.push(`${o.data} has no "answer" fields: the solution tasks have nothing to ask`);

  const extraKinds = [...new Set(tasks.flatMap((t) => t.extras ?? []))] as ExtraKind[];
  // The lens tasks need the tokenizer; the ground-truth tasks the model's recipe (which latents stand for which step).
  const needsTokenizer = tasks.some((t) => t.name === 'past_lens' || t.name === 'future_lens' || t.groundTruth);
  const shardFile = shardInfoPath(o.out, 'folder');
  const shardRun = await ShardRun.open(o.shard, 'make-tasks', [{ output: o.out, info: shardFile }]);
  // A question's position is its place in the trace file: the order of a one-machine run.
  const mine = shardRun ? joined.filter((j, i) => shardRun.take(j.trace.id, i)) : joined;
  await claimTasksFolder(o, manifest);
  const opened = extraKinds.length || needsTokenizer ? await openModel(o, manifest, extraKinds.length > 0) : null;
  try {
    mkdirSync(o.out, { recursive: true });
    const extras = opened?.head
      ? await runExtras(
          opened.model,
          opened.head,
          mine.map((j) => ({ id: j.trace.id, trace: j.trace, record: j.record, latentPositions: latentPositionsOf(j.record) })),
          {
            out: o.out,
            captureDir: o.capture,
            manifest,
            layers,
            kinds: extraKinds,
            seed: o.seed,
            tamperNoise: o.tamperNoise,
            threads: o.threads,
            signal: callbacks.signal,
            onProgress: (p) => callbacks.onProgress?.({ phase: 'extras', done: p.done, skipped: p.skipped, total: p.total, elapsedMs: Date.now() - started }),
          },
        )
      : new Map();
    if (shardRun) {
      await shardRun.write(shardFile, mine.map((j) => j.trace.id), true);
      return shardSummary(o, opened?.path ?? manifest.model.path, layers, tasks, mine.length, warnings);
    }
    const extraManifest = extraKinds.some((k) => k !== 'readout') ? await extrasManifest(o.out) : null;
    const extraById = new Map((extraManifest?.records ?? []).map((r) => [r.id, r]));

    const metadata = opened?.model.metadata(0) ?? {};
    const latentsPerStep = RECIPE_METADATA_KEY in metadata ? latentsPerStepOf(metadata) : null;
    const questions: QuestionData[] = joined.map(({ trace, record }) => ({
      id: trace.id,
      split: splitOf.get(trace.id)!,
      trace,
      record,
      nSteps: trace.steps.length - 1,
      latentPositions: latentPositionsOf(record),
      solution: facts.get(trace.id)?.solution ?? null,
      program: facts.get(trace.id)?.program ?? null,
      latentsPerStep,
      extras: extras.get(trace.id) ?? null,
      captured: capturedPositions(record, layers),
    }));

    // Counterfactual thresholds from the training split only, so val/test labels use nothing of
    // their own; only a run whose training questions have no distances at all falls back to every question.
    let cfThreshold: Record<string, number> | null = null;
    if (tasks.some((t) => t.name === 'counterfactual')) {
      cfThreshold = {};
      for (const l of layers) {
        if (o.cfThreshold !== 'median') cfThreshold[String(l)] = o.cfThreshold;
        else {
          const dist = (pool: QuestionData[]) => pool.flatMap((q) => q.extras?.counterfactual?.distance[String(l)] ?? []);
          let d = dist(questions.filter((q) => q.split === 'train'));
          if (d.length === 0) {
            d = dist(questions);
            if (d.length) warnings.push(`no training question has a counterfactual rerun: the layer ${l} threshold is the median over all splits`);
          }
          if (d.length) cfThreshold[String(l)] = round2(median(d));
        }
      }
    }
    const detok = opened ? (ids: number[]) => opened.model.detokenize(ids) : () => '';
    const ctx = context(o.seed, detok, cfThreshold ?? {});

    // Written as they are made (memory stays flat over a large dataset) to temp files renamed at
    // the end, so the example files are either the previous run's or this run's, whole.
    const files = { train: join(o.out, 'train.jsonl'), val: join(o.out, 'val.jsonl'), test: join(o.out, 'test.jsonl') };
    const tag = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const probeFile = join(o.out, PROBE_TRAIN_FILE);
    const outputs: Record<Split | 'probe', string> = { ...files, probe: probeFile };
    const handles: Record<Split | 'probe', FileHandle> = {
      train: await open(files.train + tag, 'w'),
      val: await open(files.val + tag, 'w'),
      test: await open(files.test + tag, 'w'),
      probe: await open(probeFile + tag, 'w'),
    };
    const kinds = [...SPLITS, 'probe'] as const;
    const totals: SplitCounts = { train: 0, val: 0, test: 0 };
    const examples: Record<string, SplitCounts> = {};
    const skipped: Record<string, Record<string, number>> = {};
    const withheld: Record<string, number> = {};
    try {
      const outAbs = resolve(o.out);
      const refFile = (dir: string, file: string) => relative(outAbs, resolve(dir, file)).split(sep).join('/');
      const ids = new Set<string>();
      let qDone = 0;
      for (const q of questions) {
        if (callbacks.signal?.aborted) throw Object.assign(new Error('make-tasks cancelled'), { name: 'AbortError' });
        const chunk: Record<Split | 'probe', string[]> = { train: [], val: [], test: [], probe: [] };
        for (const task of tasks) {
          examples[task.name] ??= { train: 0, val: 0, test: 0 };
          const why = task.unavailable(q);
          if (why) {
            (skipped[task.name] ??= {})[why] = (skipped[task.name][why] ?? 0) + 1;
            continue;
          }
          let made: OracleExample[] = [];
          for (const layer of layers) {
            for (const d of task.generate(q, layer, ctx)) {
              const main = d.vectors.record === 'main';
              const rec = main ? q.record : extraById.get(d.vectors.record);
              const tensor = rec?.tensors[pointOf(layer)];
              const rows = tensor ? rowsOf(tensor, d.vectors.positions) : null;
              if (!tensor || !rows) {
                const reason = `vectors not captured (${main ? 'capture' : EXTRA_DIR} record ${d.vectors.record === 'main' ? q.id : d.vectors.record})`;
                (skipped[task.name] ??= {})[reason] = (skipped[task.name][reason] ?? 0) + 1;
                continue;
              }
              const id = `${task.name}/${q.id}/L${layer}/${d.key}`;
              if (ids.has(id)) throw new Error(`task ${task.name} made the example id ${id} twice`);
              ids.add(id);
              const latentSteps = d.vectors.positions.map((p) => q.latentPositions.indexOf(p));
              made.push({
                id,
                task: task.name,
                split: q.split,
                layer,
                question: d.question,
                answer: d.answer,
                vectors: { file: refFile(main ? o.capture : join(o.out, EXTRA_DIR), tensor.file), key: tensor.key, rows },
                source: {
                  record: q.id,
                  layer,
                  point: pointOf(layer),
                  positions: d.vectors.positions,
                  ...(latentSteps.every((s) => s >= 0) ? { steps: latentSteps } : {}),
                  ...(main ? {} : { variant_record: d.vectors.record }),
                  ...d.source,
                },
                ...(task.evalOnly ? { eval_only: true } : {}),
                ...(task.leaksHead ? { leaks_head: true } : {}),
                ...(d.readout !== undefined ? { readout: d.readout } : {}),
              });
            }
          }
          if (o.maxPerQuestion > 0 && made.length > o.maxPerQuestion)
            made = made
              .map((e) => ({ e, r: unitHash(o.seed, `cap\u0000${e.id}`) }))
              .sort((a, b) => a.r - b.r)
              .slice(0, o.maxPerQuestion)
              .map((x) => x.e)
              .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
          for (const e of made) {
            if (q.split === 'train' && ((task.evalOnly && !o.trainEvalOnly) || (task.leaksHead && !o.headView))) {
              withheld[task.name] = (withheld[task.name] ?? 0) + 1;
              if (task.evalOnly) chunk.probe.push(JSON.stringify(e) + '\n');
              continue;
            }
            chunk[q.split].push(JSON.stringify(e) + '\n');
            examples[task.name][q.split]++;
            totals[q.split]++;
          }
        }
        for (const s of kinds) if (chunk[s].length) await handles[s].write(chunk[s].join(''));
        qDone++;
        callbacks.onProgress?.({ phase: 'generate', done: qDone, skipped: 0, total: questions.length, elapsedMs: Date.now() - started });
      }

      for (const s of kinds) {
        await handles[s].sync();
        await handles[s].close();
      }
      for (const s of kinds) await rename(outputs[s] + tag, outputs[s]);
    } catch (e) {
      for (const s of kinds) {
        await handles[s].close().catch(() => undefined);
        await rm(outputs[s] + tag, { force: true });
      }
      throw e;
    }
    const questionIds = { train: [] as string[], val: [] as string[], test: [] as string[] };
    for (const q of questions) questionIds[q.split].push(q.id);
    if (totals.train === 0) warnings.push('train.jsonl is empty (too few questions, or no task could be made from them)');
    const summary: MakeTasksSummary = {
      format: 'lro-tasks',
      version: 1,
      out: o.out,
      traces: o.traces,
      capture: o.capture,
      model: opened?.path ?? manifest.model.path,
      layers,
      point: 'resid_post',
      seed: o.seed,
      split: fractions,
      files,
      probeTrain: probeFile,
      questions: { train: questionIds.train.length, val: questionIds.val.length, test: questionIds.test.length },
      questionIds,
      examples,
      totals,
      tasks: tasks.map((t: TaskGenerator) => ({ name: t.name, title: t.title, evalOnly: t.evalOnly ?? false, leaksHead: t.leaksHead ?? false })),
      skipped,
      withheldFromTrain: withheld,
      cfThreshold,
      warnings,
    };
    await writeFileAtomic(join(o.out, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
    callbacks.onProgress?.({ phase: 'write', done: questions.length, skipped: 0, total: questions.length, elapsedMs: Date.now() - started });
    return summary;
  } finally {
    opened?.model.dispose();
  }
}
