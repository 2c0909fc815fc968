// `lro-native pipeline config.json`: trace -> capture -> make-tasks -> train-oracle -> eval-oracle
// -> report, from one zod-validated config. Each stage leaves a marker OUT/stages/<stage>.json
// with a fingerprint of everything it depends on (its settings and its inputs' fingerprints); a
// rerun skips stages whose marker says done with the same fingerprint and resumes the others:
// trace and capture continue their files, make-tasks continues its extra runs, training resumes
// from its checkpoint, eval from its predictions file. A stage whose settings changed is redone
// (trace and capture refuse to mix settings in one file, and say so) only with overwrite (--overwrite)
// or from (--from); otherwise the rerun is refused, so no finished output is replaced unasked.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { contentHash, fileSource } from '../core/content-hash.js';
import { capture, type CaptureRecord } from '../capture/capture.js';
import { readCaptureManifest } from '../capture/capture-manifest.js';
import { ensureDemoModel, isBuiltinModel } from '../engine/demo-model.js';
import { InputError } from '../core/errors.js';
import { evalOracle, scoreGroup, taskSalt, type EvalOracleReport, type OraclePrediction, type Score } from '../oracle/eval-oracle.js';
import { countJsonlRecords, readPromptJsonl } from '../capture/jsonl.js';
import { LatentHead } from '../reasoning/latent-head.js';
import { defaultLayers, makeTasks, PROBE_TRAIN_FILE, type MakeTasksSummary } from './make-tasks.js';
import { loadModel, type Model } from '../engine/model.js';
import { writeFileAtomic } from '../core/atomic-file.js';
import { mixSeed } from '../core/random.js';
import { lastNumber } from '../core/answers.js';
import { canonicalNumber } from '../tasks/labels.js';
import { readOracleExamples } from '../oracle/oracle-data.js';
import { requireLatentHead } from '../reasoning/reason.js';
import { pointOf } from '../tasks/extras.js';
import { TASKS } from '../tasks/registry.js';
import { trace } from '../capture/trace.js';
import { probeTasks } from '../oracle/probe.js';
import { runInstruments, runVariant, type InstrumentsResult, type VariantResult } from './study.js';
import { studyHtml } from './report-html.js';
import { PIPELINE_STAGES, type PipelineStage, type ResolvedPipelineConfig } from './pipeline-config.js';
import type { ReportScore, TaskReport, SeedFailureRow, VariantReport, PipelineReport } from './pipeline-report.js';
import { readTraceRecords } from '../tasks/inputs.js';
import { trainOracle, type TrainOracleSummary } from '../oracle/train-oracle.js';

type Config = ResolvedPipelineConfig;

export { PIPELINE_STAGES, PipelineConfigSchema, readPipelineConfig, parsePipelineConfig } from './pipeline-config.js';
export type { PipelineStage, PipelineConfig, ResolvedPipelineConfig } from './pipeline-config.js';
export type { ReportScore, TaskReport, SeedFailureRow, VariantReport, PipelineReport } from './pipeline-report.js';
export interface StageMarker {
  stage: PipelineStage;
  status: 'running' | 'done';
  fingerprint: string;
  startedAt: string;
  finishedAt?: string;
  elapsedMs?: number;
  summary?: unknown;
}

export interface PipelineEvent {
  stage: PipelineStage;
  /** start: running it; skip: done before with the same inputs; done: finished now. */
  state: 'start' | 'skip' | 'done';
  /** What the stage did (on done), or the reason it is rerun (on start). */
  message?: string;
}

export interface PipelineOptions {
  /** Rerun this stage and every later one even when marked done (their outputs are replaced). */
  from?: PipelineStage;
  /** Redo stages whose settings or inputs changed since their outputs were made (refused without it). */
  overwrite?: boolean;
  signal?: AbortSignal;
  onEvent?: (e: PipelineEvent) => void;
  /** Free-form progress of the running stage. */
  onProgress?: (stage: PipelineStage, text: string) => void;
}

export interface PipelineResult {
  out: string;
  report: PipelineReport;
  ran: PipelineStage[];
  skipped: PipelineStage[];
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Where each stage writes. */
export function pipelinePaths(out: string) {
  return {
    stages: join(out, 'stages'),
    traces: join(out, 'traces.jsonl'),
    capture: join(out, 'capture'),
    tasks: join(out, 'tasks'),
    oracle: join(out, 'oracle'),
    eval: join(out, 'eval'),
    evalReport: join(out, 'eval', 'report.json'),
    variants: join(out, 'variants'),
    variantsReport: join(out, 'variants', 'report.json'),
    instruments: join(out, 'instruments.json'),
    html: join(out, 'report.html'),
    predictions: join(out, 'eval', 'predictions.jsonl'),
    report: join(out, 'report.json'),
    summary: join(out, 'report.md'),
  };
}

async function readMarker(dir: string, stage: PipelineStage): Promise<StageMarker | null> {
  const p = join(dir, `${stage}.json`);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(await readFile(p, 'utf8')) as StageMarker;
  } catch {
    return null; // a marker cut short: the stage counts as not done
  }
}

const toScore = (s: Score): ReportScore => ({ n: s.n, accuracy: s.accuracy, ci95: s.ci95 });

/** Lower bound of a above the upper bounds of every baseline (no interval: not shown). */
export function beatsBaselines(a: ReportScore, baselines: ReportScore[]): boolean {
  if (!a.ci95) return false;
  return baselines.every((b) => b.n === 0 || (b.ci95 !== null && a.ci95![0] > b.ci95[1]));
}

/**
 * The logit-lens baseline: each example's readout (the head's top token on its vectors, written by
 * make-tasks) scored as an answer, with eval-oracle's scoring and bootstrap so the intervals compare.
 */
function readoutScores(preds: { id: string; task: string; gold: string; readout: string }[], bootstrap: number, seed: number, salt: number) {
  const as: OraclePrediction[] = preds.map((p) => ({ id: p.id, task: p.task, gold: p.gold, oracle: p.readout, noVectors: p.readout, shuffled: null, shuffledFrom: null }));
  const g = scoreGroup(as, bootstrap, mixSeed(seed, 0x1e115, salt));
  return { exact: toScore(g.oracle.exact), numeric: toScore(g.oracle.numeric) };
}

/** Runs the pipeline; see the file comment for stages, markers and resume. */
export async function runPipeline(c: ResolvedPipelineConfig, options: PipelineOptions = {}): Promise<PipelineResult> {
  const { signal, onEvent, onProgress } = options;
  const P = pipelinePaths(c.out);
  await mkdir(P.stages, { recursive: true });
  if (!existsSync(c.data.path)) throw new InputError(`data file not found: ${c.data.path}`);

  // Paths of the model and head once the demo is resolved.
  let modelPath = c.model;
  let headPath = c.latentHead;
  if (isBuiltinModel(c.model)) {
    const demo = await ensureDemoModel();
    modelPath = demo.model;
    headPath ??= demo.latentHead;
  }
  if (!existsSync(modelPath)) throw new InputError(`model not found: ${modelPath}`);
  if (headPath !== undefined && !existsSync(headPath)) throw new InputError(`latent head not found: ${headPath}`);

  let model: Model | null = null;
  let head: LatentHead | null = null;
  const open = async () => {
    if (!model) {
      model = await loadModel(modelPath);
      head = requireLatentHead(model, headPath);
    }
    return { model: model!, head: head! };
  };
  const records = (): AsyncIterable<CaptureRecord> => readPromptJsonl(c.data.path, { fields: c.data.field ? [c.data.field] : undefined, limit: c.limits.questions });

  // By content: a merged model and its base have the same size.
  const modelId = { sha256: await contentHash(modelPath), bytes: statSync(modelPath).size, head: headPath ? await contentHash(headPath) : null };
  const source = await fileSource(c.data.path, c.data.field ? `field ${c.data.field}` : undefined);
  const dataId = { path: c.data.path, sha256: await contentHash(c.data.path), field: c.data.field ?? null, questions: c.limits.questions ?? null };
  const reasonId = { latentSteps: c.limits.latentSteps ?? null, maxAnswerTokens: c.limits.maxAnswerTokens, seed: c.seed };
  // Each stage's fingerprint covers its own settings and the fingerprints of its inputs.
  const fp: Partial<Record<PipelineStage, string>> = {};
  const inputsOf: Record<PipelineStage, () => unknown> = {
    trace: () => ({ modelId, dataId, reasonId, trace: c.trace }),
    capture: () => ({ modelId, dataId, reasonId, layers: c.layers ?? null, positions: c.positions ?? null, dtype: c.dtype }),
    'make-tasks': () => ({
      trace: fp.trace,
      capture: fp.capture,
      tasks: c.tasks,
      split: c.split,
      seed: c.seed,
      layers: c.layers ?? null,
      maxPerQuestion: c.limits.maxPerQuestion,
      taskOptions: c.taskOptions,
    }),
    'train-oracle': () => ({ tasks: fp['make-tasks'], training: c.training, seed: c.seed }),
    'eval-oracle': () => ({ oracle: fp['train-oracle'], tasks: fp['make-tasks'], eval: c.eval, seed: c.seed, questionOnly: c.baselines.questionOnly }),
    variants: () => ({ tasks: fp['make-tasks'], variants: c.variants, training: c.training, eval: c.eval, seed: c.seed }),
    instruments: () => ({ capture: fp.capture, trace: fp.trace, instruments: c.instruments }),
    report: () => ({ eval: fp['eval-oracle'], variants: fp.variants, instruments: fp.instruments, baselines: c.baselines, format: 2 }),
  };

  const total = await countJsonlRecords(c.data.path, c.limits.questions);
  const ran: PipelineStage[] = [];
  const skipped: PipelineStage[] = [];
  const markers: Partial<Record<PipelineStage, StageMarker>> = {};
  const fromIndex = options.from ? PIPELINE_STAGES.indexOf(options.from) : Infinity;
  let tasksSummary: MakeTasksSummary | null = null;
  let trainSummary: TrainOracleSummary | null = null;
  let evalReport: EvalOracleReport | null = null;

  const stageBodies: Record<PipelineStage, (fresh: boolean) => Promise<{ message: string; summary?: unknown }>> = {
    trace: async (fresh) => {
      const { model: m, head: h } = await open();
      const s = await trace(m, records(), {
        out: P.traces,
        overwrite: fresh,
        source,
        latentHead: h,
        latentSteps: c.limits.latentSteps,
        maxAnswerTokens: c.limits.maxAnswerTokens,
        seed: c.seed,
        earlyDecode: true,
        ablations: c.trace.ablations,
        noiseScale: c.trace.noiseScale,
        noReasoning: true,
        threads: c.threads,
        total,
        signal,
        onProgress: (p) => onProgress?.('trace', `${p.written + p.skipped}/${total} questions`),
      });
      return { message: `${s.lines} questions traced (${s.written} now, ${s.skipped} before)`, summary: s };
    },
    capture: async (fresh) => {
      const { model: m, head: h } = await open();
      if (fresh) await rm(P.capture, { recursive: true, force: true });
      const layers = c.layers ?? defaultLayers(m.info.nLayer);
      const r = await capture(m, records(), {
        out: P.capture,
        source,
        points: layers.map(pointOf),
        positions: c.positions,
        dtype: c.dtype,
        resume: true,
        mode: 'reasoning',
        latentHead: h,
        latentSteps: c.limits.latentSteps,
        maxAnswerTokens: c.limits.maxAnswerTokens,
        seed: c.seed,
        threads: c.threads,
        total,
        signal,
        onProgress: (p) => onProgress?.('capture', `${p.captured + p.skipped}/${total} questions`),
      });
      return { message: `${r.manifest.records.length} questions captured at layers ${layers.join(',')}`, summary: { records: r.manifest.records.length, captured: r.captured, skipped: r.skipped, layers } };
    },
    'make-tasks': async (fresh) => {
      if (fresh) await rm(P.tasks, { recursive: true, force: true });
      // The capture's model stays loaded for the later stages only when make-tasks would load it again anyway.
      const s = await makeTasks(
        {
          traces: P.traces,
          capture: P.capture,
          out: P.tasks,
          tasks: c.tasks,
          layers: c.layers,
          split: c.split,
          seed: c.seed,
          data: c.data.path,
          model: modelPath,
          latentHead: headPath,
          maxPerQuestion: c.limits.maxPerQuestion,
          threads: c.threads,
          ...c.taskOptions,
        },
        { signal, onProgress: (p) => onProgress?.('make-tasks', `${p.phase} ${p.done + p.skipped}/${p.total} questions`) },
      );
      tasksSummary = s;
      if (s.totals.train === 0) throw new InputError(`make-tasks wrote no training examples (${s.warnings.join('; ') || 'too few questions'}); raise limits.questions`);
      if (s.totals.test === 0) throw new InputError('make-tasks wrote no test examples; raise limits.questions or the test fraction of split');
      return { message: `${s.totals.train}/${s.totals.val}/${s.totals.test} train/val/test examples from ${s.questions.train}/${s.questions.val}/${s.questions.test} questions`, summary: s };
    },
    'train-oracle': async (fresh) => {
      if (fresh) await rm(P.oracle, { recursive: true, force: true });
      const valFile = join(P.tasks, 'val.jsonl');
      const hasVal = existsSync(valFile) && statSync(valFile).size > 0;
      const s = await trainOracle(
        {
          format: ['gguf'],
          seed: c.seed,
          ...c.training,
          base: modelPath,
          data: join(P.tasks, 'train.jsonl'),
          ...(hasVal ? { val: valFile } : {}),
          out: P.oracle,
          resume: existsSync(join(P.oracle, 'run.json')),
          threads: c.threads,
        },
        { signal, onProgress: (p) => onProgress?.('train-oracle', p.phase === 'train' ? `step ${p.step}/${p.totalSteps} loss ${p.loss?.toFixed(4)}` : `${p.phase}`) },
      );
      trainSummary = s;
      return { message: `${s.steps} steps, loss ${s.loss?.toFixed(4) ?? 'n/a'}${s.valLoss !== null ? `, val ${s.valLoss.toFixed(4)}` : ''}`, summary: s };
    },
    'eval-oracle': async (fresh) => {
      if (fresh) await rm(P.eval, { recursive: true, force: true });
      await mkdir(P.eval, { recursive: true });
      const adapter = trainSummary?.adapter.gguf ?? join(P.oracle, 'adapter.gguf');
      if (!existsSync(adapter)) throw new InputError(`no trained adapter at ${adapter}; rerun from train-oracle`);
      const r = await evalOracle(modelPath, adapter, join(P.tasks, 'test.jsonl'), {
        maxTokens: 24,
        bootstrap: 1000,
        ...c.eval,
        seed: c.seed,
        threads: c.threads,
        predictions: P.predictions,
        resume: true,
        includeExamples: true,
        ...(c.baselines.questionOnly ? { problems: P.traces } : {}),
        signal,
        onProgress: (p) => onProgress?.('eval-oracle', `${p.done + p.skipped}/${p.total} examples`),
      });
      await writeFileAtomic(P.evalReport, JSON.stringify(r, null, 1) + '\n');
      evalReport = r;
      return { message: `${r.examples} test examples; oracle ${pct(r.overall.oracle.exact.accuracy)}, no vectors ${pct(r.overall.noVectors.exact.accuracy)}, shuffled ${pct(r.overall.shuffled.exact.accuracy)}` };
    },
    variants: async (fresh) => {
      if (fresh) await rm(P.variants, { recursive: true, force: true });
      const results: VariantResult[] = [];
      for (const v of c.variants)
        results.push(
          await runVariant(
            v,
            { tasks: P.tasks, dir: join(P.variants, v.name) },
            { format: ['gguf'], seed: c.seed, ...c.training, base: modelPath, threads: c.threads },
            { maxTokens: 24, bootstrap: 1000, ...c.eval, seed: c.seed, threads: c.threads },
            false,
            signal,
            (t) => onProgress?.('variants', t),
          ),
        );
      await mkdir(P.variants, { recursive: true });
      await writeFileAtomic(P.variantsReport, JSON.stringify(results, null, 1) + '\n');
      return { message: results.length ? results.map((r) => `${r.name} ${pct(r.eval.overall.oracle.exact.accuracy)}`).join(', ') : 'no variants configured' };
    },
    instruments: async () => {
      const i = c.instruments;
      if (i.invert === 0 && i.patchPairs === 0) {
        await writeFileAtomic(P.instruments, JSON.stringify({ format: 'lro-study-instruments', inversion: [], patch: [] }) + '\n');
        return { message: 'none configured' };
      }
      const { model: m } = await open();
      tasksSummary ??= JSON.parse(await readFile(join(P.tasks, 'summary.json'), 'utf8')) as MakeTasksSummary;
      const testIds = new Set(tasksSummary.questionIds.test);
      const questions = (await readTraceRecords(P.traces)).filter((t) => testIds.has(t.id) && t.question).map((t) => ({ id: t.id, question: t.question! }));
      const r = await runInstruments(
        m,
        {
          capture: P.capture,
          manifest: await readCaptureManifest(P.capture),
          questions,
          ...i,
          latentHead: headPath,
          maxAnswerTokens: c.limits.maxAnswerTokens,
          threads: c.threads,
          out: P.instruments,
        },
        signal,
        (t) => onProgress?.('instruments', t),
      );
      return { message: `${r.inversion.length} questions inverted, ${r.patch.length} patch-swept` };
    },
    report: async () => {
      tasksSummary ??= JSON.parse(await readFile(join(P.tasks, 'summary.json'), 'utf8')) as MakeTasksSummary;
      evalReport ??= JSON.parse(await readFile(P.evalReport, 'utf8')) as EvalOracleReport;
      const trainMarker = markers['train-oracle'] ?? (await readMarker(P.stages, 'train-oracle'));
      trainSummary ??= (trainMarker?.summary as TrainOracleSummary | undefined) ?? null;
      const report = await buildReport(c, modelPath, tasksSummary, trainSummary, evalReport, markers, P);
      await writeFileAtomic(P.report, JSON.stringify(report, null, 1) + '\n');
      await writeFileAtomic(P.summary, reportMarkdown(report));
      const instruments = existsSync(P.instruments) ? (JSON.parse(await readFile(P.instruments, 'utf8')) as InstrumentsResult) : null;
      await writeFileAtomic(P.html, studyHtml(report, await readTraceRecords(P.traces), instruments));
      return { message: `${P.report}, ${P.summary} and ${P.html}` };
    },
  };

  try {
    for (const [i, stage] of PIPELINE_STAGES.entries()) {
      const fingerprint = sha256(JSON.stringify(inputsOf[stage]()));
      fp[stage] = fingerprint;
      const marker = await readMarker(P.stages, stage);
      const forced = i >= fromIndex;
      if (marker?.status === 'done' && marker.fingerprint === fingerprint && !forced) {
        markers[stage] = marker;
        skipped.push(stage);
        onEvent?.({ stage, state: 'skip' });
        continue;
      }
      if (signal?.aborted) throw Object.assign(new Error('pipeline stopped'), { name: 'AbortError' });
      // Same inputs and not done: an interrupted run, continued. Other inputs (or --from): start over.
      const changed = marker !== null && marker.fingerprint !== fingerprint;
      if (changed && !forced && !options.overwrite)
        throw new InputError(
          `${join(P.stages, `${stage}.json`)}: the ${stage} outputs in ${c.out} were made from other settings or inputs; pass --overwrite to redo ${stage} and what follows (or --from ${stage}), or choose another out`,
        );
      const fresh = forced || changed;
      const why = forced ? 'rerun (--from)' : marker === null ? undefined : marker.fingerprint !== fingerprint ? 'settings or inputs changed: redone' : 'continuing an interrupted run';
      onEvent?.({ stage, state: 'start', message: why });
      const startedAt = new Date().toISOString();
      const t0 = Date.now();
      await writeFileAtomic(join(P.stages, `${stage}.json`), JSON.stringify({ stage, status: 'running', fingerprint, startedAt } satisfies StageMarker, null, 1) + '\n');
      const r = await stageBodies[stage](fresh);
      const done: StageMarker = { stage, status: 'done', fingerprint, startedAt, finishedAt: new Date().toISOString(), elapsedMs: Date.now() - t0, summary: r.summary };
      await writeFileAtomic(join(P.stages, `${stage}.json`), JSON.stringify(done, null, 1) + '\n');
      markers[stage] = done;
      ran.push(stage);
      onEvent?.({ stage, state: 'done', message: r.message });
    }
  } finally {
    (model as Model | null)?.dispose();
  }
  const report = JSON.parse(await readFile(P.report, 'utf8')) as PipelineReport;
  return { out: c.out, report, ran, skipped };
}

function pct(x: number | null): string {
  return x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`;
}

async function buildReport(
  c: Config,
  modelPath: string,
  tasks: MakeTasksSummary,
  train: TrainOracleSummary | null,
  ev: EvalOracleReport,
  markers: Partial<Record<PipelineStage, StageMarker>>,
  P: ReturnType<typeof pipelinePaths>,
): Promise<PipelineReport> {
  const bootstrap = c.eval.bootstrap ?? 1000;
  const testFile = join(P.tasks, 'test.jsonl');
  // Readouts and sources ride on the test examples; predictions tie them to the eval's gold answers.
  const readouts: { id: string; task: string; gold: string; readout: string }[] = [];
  const sources = new Map<string, Record<string, unknown>>();
  for await (const ex of readOracleExamples(testFile)) {
    const r = (ex as { readout?: unknown }).readout;
    if (typeof r === 'string') readouts.push({ id: ex.id, task: ex.task, gold: ex.answer, readout: r });
    sources.set(ex.id, ex.source);
  }
  const preds = ev.predictions ?? [];
  const evaluated = new Set(preds.map((p) => p.id));
  const lens = readouts.filter((r) => evaluated.has(r.id));
  const probeable = new Set(TASKS.filter((t) => t.probe && tasks.tasks.some((x) => x.name === t.name)).map((t) => t.name));
  const probe =
    c.baselines.probe && probeable.size
      ? await probeTasks(join(P.tasks, PROBE_TRAIN_FILE), testFile, probeable, (await readCaptureManifest(P.capture)).model.nEmbd, { keep: evaluated, lambda: c.baselines.probeLambda })
      : null;
  const out: Record<string, TaskReport> = {};
  const cond = (s: { exact: Score; numeric: Score }) => ({ exact: toScore(s.exact), numeric: toScore(s.numeric) });
  const groundTruth = new Set(TASKS.filter((t) => t.groundTruth).map((t) => t.name));
  for (const t of tasks.tasks) {
    const g = ev.tasks[t.name];
    const mine = lens.filter((r) => r.task === t.name);
    const ll = mine.length ? readoutScores(mine, bootstrap, c.seed, taskSalt(t.name)) : null;
    const probed = probe ? preds.filter((p) => p.task === t.name && probe.answers.has(p.id)).map((p) => ({ id: p.id, task: p.task, gold: p.gold, readout: probe.answers.get(p.id)! })) : [];
    const pr = probed.length ? readoutScores(probed, bootstrap, c.seed, taskSalt(t.name) ^ 0x9b0be) : null;
    const oracle = g ? cond(g.oracle).exact : null;
    out[t.name] = {
      title: t.title,
      evalOnly: t.evalOnly,
      leaksHead: t.leaksHead,
      groundTruth: groundTruth.has(t.name),
      examples: tasks.examples[t.name] ?? { train: 0, val: 0, test: 0 },
      eval: g
        ? {
            oracle: oracle!,
            noVectors: cond(g.noVectors).exact,
            shuffled: cond(g.shuffled).exact,
            logitLens: ll?.exact ?? null,
            questionOnly: g.questionOnly.exact.n > 0 ? toScore(g.questionOnly.exact) : null,
            probe: pr?.exact ?? null,
            readsVectors: beatsBaselines(oracle!, [toScore(g.noVectors.exact), toScore(g.shuffled.exact)]),
            numeric:
              g.nNumeric > 0
                ? { oracle: toScore(g.oracle.numeric), noVectors: toScore(g.noVectors.numeric), shuffled: toScore(g.shuffled.numeric), logitLens: ll?.numeric ?? null }
                : null,
          }
        : null,
    };
  }
  // The seed's failure: answers to the open questions, against the step's value and the final answer.
  const seedFailure: SeedFailureRow[] = [];
  for (const asked of ['thinking', 'compute']) {
    const rows = preds.filter((p) => p.task === 'step_thinking' && sources.get(p.id)?.asked === asked);
    if (rows.length === 0) continue;
    const holds = (p: OraclePrediction, x: unknown) => lastNumber(p.oracle) !== null && canonicalNumber(lastNumber(p.oracle)!) === String(x);
    seedFailure.push({
      asked,
      n: rows.length,
      intermediate: rows.filter((p) => holds(p, lastNumber(p.gold))).length,
      final: rows.filter((p) => holds(p, sources.get(p.id)?.final)).length,
    });
  }
  const variantResults = existsSync(P.variantsReport) ? (JSON.parse(await readFile(P.variantsReport, 'utf8')) as VariantResult[]) : [];
  const variants: VariantReport[] = variantResults.map((v) => ({
    name: v.name,
    tasks: v.tasks,
    layers: v.layers,
    rank: v.rank,
    trainExamples: v.trainExamples,
    loss: v.loss,
    scores: Object.fromEntries(Object.entries(v.eval.tasks).map(([k, g]) => [k, toScore(g.oracle.exact)])),
    overall: toScore(v.eval.overall.oracle.exact),
  }));
  const o = ev.overall;
  const stages = Object.fromEntries(
    PIPELINE_STAGES.map((s) => [s, { elapsedMs: markers[s]?.elapsedMs ?? null, finishedAt: markers[s]?.finishedAt ?? null }]),
  ) as PipelineReport['stages'];
  const overallOracle = toScore(o.oracle.exact);
  return {
    format: 'lro-pipeline-report',
    version: 2,
    createdAt: new Date().toISOString(),
    out: c.out,
    model: modelPath,
    config: c,
    stages,
    questions: tasks.questions,
    layers: tasks.layers,
    training: {
      steps: train?.steps ?? 0,
      loss: train?.loss ?? null,
      valLoss: train?.valLoss ?? null,
      trainExamples: train?.trainExamples ?? tasks.totals.train,
      adapter: train?.adapter.gguf ?? null,
    },
    tasks: out,
    overall: {
      oracle: overallOracle,
      noVectors: toScore(o.noVectors.exact),
      shuffled: toScore(o.shuffled.exact),
      logitLens: null,
      questionOnly: o.questionOnly.exact.n > 0 ? toScore(o.questionOnly.exact) : null,
      probe: null,
      readsVectors: beatsBaselines(overallOracle, [toScore(o.noVectors.exact), toScore(o.shuffled.exact)]),
      numeric: o.nNumeric > 0 ? { oracle: toScore(o.oracle.numeric), noVectors: toScore(o.noVectors.numeric), shuffled: toScore(o.shuffled.numeric), logitLens: null } : null,
    },
    probe: probe?.cells ?? [],
    seedFailure,
    variants,
  };
}

function cell(s: ReportScore | null | undefined): string {
  if (!s || s.accuracy === null) return '—';
  const ci = s.ci95 ? ` [${(100 * s.ci95[0]).toFixed(0)}, ${(100 * s.ci95[1]).toFixed(0)}]` : '';
  return `${(100 * s.accuracy).toFixed(1)}%${ci}`;
}

/** The short markdown summary: per task, oracle vs baselines with 95% intervals; probe, seed's failure and variants. */
export function reportMarkdown(r: PipelineReport): string {
  const lines = [
    `# Oracle pipeline report`,
    '',
    `Model \`${r.model}\`, layers ${r.layers.join(', ')}; questions train/val/test ${r.questions.train}/${r.questions.val}/${r.questions.test}; ` +
      `${r.training.steps} training steps on ${r.training.trainExamples} examples (final loss ${r.training.loss?.toFixed(4) ?? 'n/a'}${r.training.valLoss !== null ? `, val ${r.training.valLoss.toFixed(4)}` : ''}).`,
    '',
    'Exact-match accuracy on the test split with 95% bootstrap intervals. Baselines: no vectors injected, ' +
      "vectors shuffled across questions, the output head's own reading of the vectors (logit lens) where a task has one, " +
      'the base model without the oracle on the problem and the task question (question only), and a linear probe fitted on the ' +
      "training split's labels (the supervised ceiling) where the vectors alone decide the answer. " +
      '"reads" marks a task whose oracle interval lies above the no-vector and shuffled intervals.',
    '',
    '| task | test n | oracle | no vectors | shuffled | logit lens | question only | probe | reads | notes |',
    '|---|---:|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, t] of Object.entries(r.tasks)) {
    const notes = [t.groundTruth ? 'ground truth' : '', t.evalOnly ? 'eval only' : '', t.leaksHead ? "leaks the head's view" : '', name === 'answer_value' ? "the seed's task" : '']
      .filter(Boolean)
      .join('; ');
    if (!t.eval) {
      lines.push(`| ${name} | 0 | — | — | — | — | — | — | | ${notes || 'no test examples'} |`);
      continue;
    }
    const e = t.eval;
    lines.push(
      `| ${name} | ${e.oracle.n} | ${cell(e.oracle)} | ${cell(e.noVectors)} | ${cell(e.shuffled)} | ${cell(e.logitLens)} | ${cell(e.questionOnly)} | ${cell(e.probe)} | ${e.readsVectors ? 'yes' : 'no'} | ${notes} |`,
    );
  }
  if (r.overall)
    lines.push(`| **all** | ${r.overall.oracle.n} | ${cell(r.overall.oracle)} | ${cell(r.overall.noVectors)} | ${cell(r.overall.shuffled)} | — | ${cell(r.overall.questionOnly)} | — | ${r.overall.readsVectors ? 'yes' : 'no'} | |`);
  lines.push('', 'An oracle that reads the vectors beats the no-vector and shuffled baselines; overlapping intervals mean the test split is too small to tell.', '');
  const stepCells = r.probe.filter((x) => x.step !== null);
  if (stepCells.length) {
    const layers = [...new Set(stepCells.map((x) => x.layer))].sort((a, b) => a - b);
    lines.push('## Linear probe (test accuracy; majority class in brackets)', '', `| task | step | ${layers.map((l) => `L${l}`).join(' | ')} |`, `|---|---:|${layers.map(() => '---|').join('')}`);
    const keys = [...new Set(stepCells.map((x) => `${x.task}\u0000${x.step}`))];
    for (const k of keys) {
      const [task, step] = k.split('\u0000');
      const row = layers.map((l) => {
        const x = stepCells.find((y) => y.task === task && String(y.step) === step && y.layer === l);
        return x ? `${((100 * x.correct) / x.test).toFixed(1)}% (${((100 * x.majority) / x.test).toFixed(0)}%)` : '—';
      });
      lines.push(`| ${task} | ${Number(step) + 1} | ${row.join(' | ')} |`);
    }
    lines.push('');
  }
  if (r.seedFailure.length) {
    lines.push("## The seed's failure", '', "Open questions on the latents of a step whose value differs from the final answer: how often the oracle names the step's value, and how often the final answer.", '', '| question | n | step value | final answer |', '|---|---:|---:|---:|');
    for (const f of r.seedFailure)
      lines.push(`| ${f.asked === 'thinking' ? 'What is the model thinking about?' : 'What does this step compute?'} | ${f.n} | ${((100 * f.intermediate) / f.n).toFixed(1)}% | ${((100 * f.final) / f.n).toFixed(1)}% |`);
    lines.push('');
  }
  if (r.variants.length) {
    const names = Object.keys(r.tasks).filter((t) => r.variants.some((v) => v.scores[t]));
    lines.push('## Recipe ablations (oracle exact match per test task)', '', `| variant | train tasks | layers | rank | train n | ${names.join(' | ')} | all |`, `|---|---|---|---:|---:|${names.map(() => '---|').join('')}---|`);
    for (const v of r.variants)
      lines.push(
        `| ${v.name} | ${v.tasks?.join(', ') ?? 'all'} | ${v.layers?.join(', ') ?? 'all'} | ${v.rank} | ${v.trainExamples} | ${names.map((t) => cell(v.scores[t])).join(' | ')} | ${cell(v.overall)} |`,
      );
    lines.push('');
  }
  return lines.join('\n');
}
