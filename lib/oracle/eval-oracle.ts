// Accuracy of an activation oracle on held-out examples, per task, against two baselines that
// tell whether the answers come from the vectors at all: the same prompts with nothing injected,
// and with each example's vectors swapped for another example's (seeded; only between examples
// with the same number of vectors, so the prompt keeps its shape). Scores: exact match after
// trimming, and numeric match (the last number of the answer equals the last number of the gold
// answer) where the gold answer has a number; 95% percentile-bootstrap intervals.
// Answers are appended to a predictions file as batches finish, so a stopped run resumes there.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { z } from 'zod';
import { isCorrect, lastNumber } from '../core/answers.js';
import { readPromptJsonl } from '../capture/jsonl.js';
import { OracleRunner, type OracleQuery } from './ask-oracle.js';
import { contentHash } from '../core/content-hash.js';
import { ShardRun, ShardSchema, shardInfoPath } from '../core/shard.js';
import { abortError, InputError } from '../core/errors.js';
import type { Model } from '../engine/model.js';
import { writeFileAtomic } from '../core/atomic-file.js';
import { fnv1a, mixSeed, rng, shuffleInPlace } from '../core/random.js';
import { readOracleLines, VectorStore, type OracleExample } from './oracle-data.js';
import { parseOptions } from '../core/options.js';
import { firstDifference } from '../training/train-run.js';

export const ORACLE_CONDITIONS = ['oracle', 'noVectors', 'shuffled', 'questionOnly'] as const;
export type OracleCondition = (typeof ORACLE_CONDITIONS)[number];

export const EvalOracleOptionsSchema = z
  .object({
    maxTokens: z.number().int().min(1).max(65536).default(64),
    /** Examples per batch (each condition decodes its own sequences in the same batch). */
    batchSize: z.number().int().min(1).max(4096).default(16),
    /** Seeds the shuffled baseline and the bootstrap. */
    seed: z.number().int().min(0).max(0xffffffff).default(0),
    bootstrap: z.number().int().min(0).max(1_000_000).default(1000),
    limit: z.number().int().positive().optional(),
    injectLayer: z.number().int().min(-1).optional(),
    injectCoef: z.number().positive().finite().optional(),
    threads: z.number().int().min(0).max(1024).default(0),
    /** JSONL of per-example answers, appended as batches finish. */
    predictions: z.string().min(1).optional(),
    /** Continue the predictions file: its examples are not asked again. */
    resume: z.boolean().default(false),
    /** List every example's answers in the report. */
    includeExamples: z.boolean().default(true),
    /**
     * A JSONL file of the problems the vectors came from (a trace file, or the dataset), read by
     * record id: adds the question-only baseline, the base model without the adapter and without
     * vectors, asked the problem followed by the task question.
     */
    problems: z.string().min(1).optional(),
    /** With predictions: ask only this shard's examples (see shard.ts); `merge` joins the predictions files. */
    shard: ShardSchema.optional(),
  })
  .strict();
export type EvalOracleOptions = z.input<typeof EvalOracleOptionsSchema>;

export interface EvalOracleProgress {
  done: number;
  /** Examples found in the predictions file of an earlier run. */
  skipped: number;
  total: number;
  elapsedMs: number;
}

export interface Score {
  n: number;
  correct: number;
  accuracy: number | null;
  /** 95% percentile bootstrap interval; null without examples or with bootstrap 0. */
  ci95: [number, number] | null;
}

export interface ConditionScores {
  exact: Score;
  /** Over the examples whose gold answer has a number. */
  numeric: Score;
}

export interface GroupReport {
  n: number;
  /** Examples with a number in the gold answer. */
  nNumeric: number;
  oracle: ConditionScores;
  noVectors: ConditionScores;
  /** Over the examples that had a partner to take vectors from. */
  shuffled: ConditionScores;
  /** The base model on the problem text and the task question (with the problems option; n 0 otherwise). */
  questionOnly: ConditionScores;
}

export interface OraclePrediction {
  id: string;
  task: string;
  gold: string;
  oracle: string;
  noVectors: string;
  /** null: no other example with as many vectors. */
  shuffled: string | null;
  shuffledFrom: string | null;
  /** The base model on the problem and the task question; null (or absent) without the problems option. */
  questionOnly?: string | null;
}

export interface EvalOracleReport {
  format: 'lro-oracle-eval';
  version: 1;
  createdAt: string;
  base: string;
  adapter: string | null;
  data: string;
  examples: number;
  settings: { injectLayer: number; injectCoef: number; maxTokens: number; seed: number; bootstrap: number; decoding: 'greedy' };
  tasks: Record<string, GroupReport>;
  overall: GroupReport;
  predictions?: OraclePrediction[];
}

/** Exact match after trimming. */
export function exactMatch(answer: string, gold: string): boolean {
  return answer.trim() === gold.trim();
}

/** Numeric match: null when the gold answer has no number. */
export function numericMatch(answer: string, gold: string): boolean | null {
  const g = lastNumber(gold);
  return g === null ? null : isCorrect(answer, g);
}

/**
 * The shuffled baseline's partner of each example: another example with the same number of vectors
 * (so the prompt keeps its shape) and, wherever possible, from another question (source.record):
 * a partner from the same question would often carry the very same vectors. Within a group the
 * examples are laid out question by question in a seeded order and each takes the one m places on,
 * m = the largest question's share; when no question holds more than half the group, no example
 * gets a partner from its own question.
 */
export function shufflePartners(counts: readonly number[], seed: number, questions?: readonly string[]): number[] {
  const partner = counts.map(() => -1);
  const groups = new Map<number, number[]>();
  counts.forEach((c, i) => {
    if (!groups.has(c)) groups.set(c, []);
    groups.get(c)!.push(i);
  });
  const next = rng(mixSeed(seed, 0x5eed));
  for (const c of [...groups.keys()].sort((a, b) => a - b)) {
    const members = groups.get(c)!;
    if (members.length < 2) continue;
    const byQuestion = new Map<string, number[]>();
    for (const i of members) {
      const q = questions?.[i] ?? `#${i}`;
      if (!byQuestion.has(q)) byQuestion.set(q, []);
      byQuestion.get(q)!.push(i);
    }
    const blocks = shuffleInPlace([...byQuestion.values()], next).map((blk) => shuffleInPlace([...blk], next));
    const order = blocks.flat();
    const largest = Math.max(...blocks.map((blk) => blk.length));
    const shift = largest < order.length ? largest : 1;
    order.forEach((i, j) => (partner[i] = order[(j + shift) % order.length]));
  }
  return partner;
}

/** Percentile bootstrap of several 0/1 score lists over the same examples (paired resamples). */
function bootstrapCis(lists: (0 | 1 | null)[][], resamples: number, seed: number): ([number, number] | null)[] {
  const n = lists[0]?.length ?? 0;
  if (n === 0 || resamples === 0) return lists.map(() => null);
  const next = rng(seed);
  const means: number[][] = lists.map(() => []);
  const sums = new Float64Array(lists.length);
  const counts = new Float64Array(lists.length);
  for (let b = 0; b < resamples; b++) {
    sums.fill(0);
    counts.fill(0);
    for (let k = 0; k < n; k++) {
      const i = Math.floor(next() * n);
      for (let l = 0; l < lists.length; l++) {
        const v = lists[l][i];
        if (v === null) continue;
        sums[l] += v;
        counts[l]++;
      }
    }
    for (let l = 0; l < lists.length; l++) if (counts[l] > 0) means[l].push(sums[l] / counts[l]);
  }
  return means.map((m) => {
    if (m.length === 0) return null;
    m.sort((a, b) => a - b);
    const at = (q: number) => m[Math.min(m.length - 1, Math.max(0, Math.floor(q * m.length)))];
    return [at(0.025), at(0.975)] as [number, number];
  });
}

/** FNV-1a of a task name: the per-task bootstrap salt (eval-oracle's and the pipeline's baselines use the same one). */
export function taskSalt(s: string): number {
  return fnv1a(s);
}

/** Scores of one group of predictions. */
export function scoreGroup(preds: OraclePrediction[], resamples: number, seed: number): GroupReport {
  const lists: (0 | 1 | null)[][] = [];
  const b = (x: boolean | null): 0 | 1 | null => (x === null ? null : x ? 1 : 0);
  for (const c of ORACLE_CONDITIONS) {
    lists.push(preds.map((p) => (p[c] == null ? null : b(exactMatch(p[c]!, p.gold)))));
    lists.push(preds.map((p) => (p[c] == null ? null : b(numericMatch(p[c]!, p.gold)))));
  }
  const cis = bootstrapCis(lists, resamples, seed);
  const score = (l: number): Score => {
    const vals = lists[l].filter((v): v is 0 | 1 => v !== null);
    const correct = vals.reduce<number>((a, v) => a + v, 0);
    return { n: vals.length, correct, accuracy: vals.length ? correct / vals.length : null, ci95: vals.length ? cis[l] : null };
  };
  const cond = (k: number): ConditionScores => ({ exact: score(2 * k), numeric: score(2 * k + 1) });
  return {
    n: preds.length,
    nNumeric: preds.filter((p) => lastNumber(p.gold) !== null).length,
    oracle: cond(0),
    noVectors: cond(1),
    shuffled: cond(2),
    questionOnly: cond(3),
  };
}

interface PredictionsHeader {
  format: 'lro-oracle-predictions';
  identity: Record<string, unknown>;
}

function readPredictions(path: string, identity: Record<string, unknown>): Map<string, OraclePrediction> {
  const out = new Map<string, OraclePrediction>();
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((l, i) => {
    if (l.trim() === '') return;
    let j: unknown;
    try {
      j = JSON.parse(l);
    } catch {
      if (i === lines.length - 1 || lines.slice(i + 1).every((x) => x.trim() === '')) return; // cut short by a stop
      throw new InputError(`${path}:${i + 1}: not valid JSON`);
    }
    if (i === 0) {
      const h = j as PredictionsHeader;
      if (h.format !== 'lro-oracle-predictions') throw new InputError(`${path}:1: not an oracle predictions file`);
      const d = firstDifference(h.identity, identity);
      if (d) throw new InputError(`${path}: written by a run with other inputs or settings (${d}); use another --predictions file`);
      return;
    }
    const p = j as OraclePrediction;
    out.set(p.id, p);
  });
  return out;
}

/** Per-task accuracy of an oracle with both baselines, in one report. */
export async function evalOracle(
  base: string | Model,
  adapter: string | null,
  data: string,
  options: EvalOracleOptions & { signal?: AbortSignal; onProgress?: (p: EvalOracleProgress) => void } = {},
): Promise<EvalOracleReport> {
  const { signal, onProgress, ...rest } = options;
  const o = parseOptions(EvalOracleOptionsSchema, rest, 'eval-oracle options');
  if (!existsSync(data) || !statSync(data).isFile()) throw new InputError(`examples file not found: ${data}`);
  if (o.shard && !o.predictions) throw new InputError('eval-oracle: a sharded run needs a predictions file (--predictions): merge joins those');
  const t0 = Date.now();
  const runner = await OracleRunner.open(base, adapter, { injectLayer: o.injectLayer, injectCoef: o.injectCoef, threads: o.threads });
  let baseRunner: OracleRunner | null = null;
  try {
    const problems = o.problems ? await readProblems(o.problems) : null;
    if (problems) baseRunner = await OracleRunner.open(runner.model, null, { injectLayer: runner.injectLayer, injectCoef: runner.injectCoef, threads: o.threads });
    const width = runner.model.info.nEmbd;
    const store = new VectorStore(data);
    const examples: { ex: OracleExample; where: string }[] = [];
    const seen = new Map<string, number>();
    for await (const { example: ex, line } of readOracleLines(data)) {
      if (o.limit !== undefined && examples.length >= o.limit) break;
      const where = `${data}:${line}`;
      if (seen.has(ex.id)) throw new InputError(`${where}: field 'id': "${ex.id}" is already used on line ${seen.get(ex.id)}`);
      seen.set(ex.id, line);
      try {
        await store.check(ex, width);
        runner.prompt({ layer: ex.layer, question: ex.question, count: Array.isArray(ex.vectors) ? ex.vectors.length : ex.vectors.rows.length });
      } catch (e) {
        throw new InputError(`${where}: ${(e as Error).message}`);
      }
      examples.push({ ex, where });
    }
    if (examples.length === 0) throw new InputError(`${data}: no examples`);
    const counts = examples.map(({ ex }) => (Array.isArray(ex.vectors) ? ex.vectors.length : ex.vectors.rows.length));
    const questions = examples.map(({ ex }) => String((ex.source as { record?: unknown }).record ?? ex.id));
    const partners = shufflePartners(counts, o.seed, questions);
    if (problems) {
      const missing = examples.findIndex((_, i) => !problems.has(questions[i]));
      if (missing >= 0) throw new InputError(`${examples[missing].where}: record "${questions[missing]}" is not in ${o.problems} (the problems file of the question-only baseline)`);
    }

    const identity = {
      base: await contentHash(runner.model.info.path),
      adapter: adapter === null ? null : await contentHash(adapter),
      data: await contentHash(data),
      injectLayer: runner.injectLayer,
      injectCoef: runner.injectCoef,
      maxTokens: o.maxTokens,
      seed: o.seed,
      problems: o.problems ? await contentHash(o.problems) : null,
    };
    let done = new Map<string, OraclePrediction>();
    const shardFile = o.predictions ? shardInfoPath(o.predictions, 'file') : '';
    const shardRun = o.predictions ? await ShardRun.open(o.shard, 'eval-oracle', [{ output: o.predictions, info: shardFile }]) : null;
    // The shuffled partners above come from every example, so that a shard's baseline is the one-machine run's.
    const mine = shardRun ? examples.map((_, i) => i).filter((i) => shardRun.take(examples[i].ex.id, i)) : examples.map((_, i) => i);
    if (o.predictions) {
      if (existsSync(o.predictions)) {
        if (!o.resume) throw new InputError(`${o.predictions} already exists; pass --resume to continue it, or remove it`);
        done = readPredictions(o.predictions, identity);
      }
      // A fresh file, or one rewritten without a line cut short by a stop.
      const header: PredictionsHeader = { format: 'lro-oracle-predictions', identity };
      await writeFileAtomic(o.predictions, [header, ...done.values()].map((x) => JSON.stringify(x) + '\n').join(''));
      await shardRun?.write(shardFile, [], false);
    }
    const skipped = mine.filter((i) => done.has(examples[i].ex.id)).length;
    const todo = mine.filter((i) => !done.has(examples[i].ex.id));
    onProgress?.({ done: 0, skipped, total: mine.length, elapsedMs: Date.now() - t0 });

    let finished = 0;
    for (let b = 0; b < todo.length; b += o.batchSize) {
      if (signal?.aborted) throw abortError();
      const batch = todo.slice(b, b + o.batchSize);
      const vectors = new Map<number, Float32Array>();
      for (const i of [...batch, ...batch.map((i) => partners[i]).filter((p) => p >= 0)]) {
        if (!vectors.has(i)) vectors.set(i, await store.load(examples[i].ex, width));
      }
      const queries: OracleQuery[] = [];
      const slots: { i: number; cond: OracleCondition }[] = [];
      for (const i of batch) {
        const { ex } = examples[i];
        const q = { layer: ex.layer, question: ex.question, count: counts[i] };
        queries.push({ ...q, vectors: vectors.get(i)! }, { ...q, vectors: null });
        slots.push({ i, cond: 'oracle' }, { i, cond: 'noVectors' });
        if (partners[i] >= 0) {
          queries.push({ ...q, vectors: vectors.get(partners[i])! });
          slots.push({ i, cond: 'shuffled' });
        }
      }
      const answers = await runner.answer(queries, { maxTokens: o.maxTokens, batchSize: Math.max(1, o.batchSize * 3), signal });
      const baseAnswers = baseRunner
        ? await baseRunner.answer(
            batch.map((i) => ({ layer: examples[i].ex.layer, question: `${problems!.get(questions[i])}\n${examples[i].ex.question}`, count: 0, vectors: null })),
            { maxTokens: o.maxTokens, batchSize: Math.max(1, o.batchSize), signal },
          )
        : null;
      const byIndex = new Map<number, OraclePrediction>();
      slots.forEach(({ i, cond }, k) => {
        const { ex } = examples[i];
        if (!byIndex.has(i))
          byIndex.set(i, {
            id: ex.id,
            task: ex.task,
            gold: ex.answer,
            oracle: '',
            noVectors: '',
            shuffled: null,
            shuffledFrom: partners[i] >= 0 ? examples[partners[i]].ex.id : null,
            questionOnly: null,
          });
        byIndex.get(i)![cond] = answers[k].text;
      });
      batch.forEach((i, k) => {
        if (baseAnswers) byIndex.get(i)!.questionOnly = baseAnswers[k].text;
      });
      const preds = batch.map((i) => byIndex.get(i)!);
      for (const p of preds) done.set(p.id, p);
      if (o.predictions) await appendFile(o.predictions, preds.map((p) => JSON.stringify(p) + '\n').join(''));
      finished += batch.length;
      onProgress?.({ done: finished, skipped, total: mine.length, elapsedMs: Date.now() - t0 });
    }

    const all = mine.map((i) => done.get(examples[i].ex.id)!);
    await shardRun?.write(shardFile, all.map((p) => p.id), true);
    const tasks: Record<string, GroupReport> = {};
    for (const task of [...new Set(all.map((p) => p.task))].sort())
      tasks[task] = scoreGroup(
        all.filter((p) => p.task === task),
        o.bootstrap,
        mixSeed(o.seed, taskSalt(task)),
      );
    return {
      format: 'lro-oracle-eval',
      version: 1,
      createdAt: new Date().toISOString(),
      base: runner.model.info.path,
      adapter: adapter === null ? null : resolve(adapter),
      data: resolve(data),
      examples: all.length,
      settings: { injectLayer: runner.injectLayer, injectCoef: runner.injectCoef, maxTokens: o.maxTokens, seed: o.seed, bootstrap: o.bootstrap, decoding: 'greedy' },
      tasks,
      overall: scoreGroup(all, o.bootstrap, mixSeed(o.seed, 0xa11)),
      ...(o.includeExamples ? { predictions: all } : {}),
    };
  } finally {
    baseRunner?.dispose();
    runner.dispose();
  }
}

/** Problem texts by record id: a trace file's "question" or a dataset's prompt field (readPromptJsonl). */
async function readProblems(path: string): Promise<Map<string, string>> {
  if (!existsSync(path) || !statSync(path).isFile()) throw new InputError(`problems file not found: ${path}`);
  const out = new Map<string, string>();
  for await (const r of readPromptJsonl(path)) out.set(r.id, r.text ?? '');
  if (out.size === 0) throw new InputError(`${path}: no problems (expected JSONL lines with "id" and "question")`);
  return out;
}
