// GSM8K-style accuracy of a latent reasoning model, with and without its latent steps: the last
// number of each answer against the number after "####" in the data.
import { z } from 'zod';
import { isCorrect } from '../core/answers.js';
import type { CaptureRecord } from './capture-manifest.js';
import { LatentHead } from '../reasoning/latent-head.js';
import type { Model } from '../engine/model.js';
import { parseOptions } from '../core/options.js';
import { reasonStream, requireLatentHead } from '../reasoning/reason.js';
import { ShardSchema } from '../core/shard.js';
import { trace, type TraceProgress } from './trace.js';

export const EvaluateOptionsSchema = z
  .object({
    latentSteps: z.number().int().min(0).max(4096).optional(),
    format: z.enum(['codi-answer-only', 'codi', 'plain']).optional(),
    maxAnswerTokens: z.number().int().min(0).max(1 << 20).default(32),
    threads: z.number().int().min(0).max(1024).default(0),
    latentHead: z.union([z.string().min(1), z.custom<LatentHead>((v) => v instanceof LatentHead, { message: 'expected a file path or a LatentHead' })]).optional(),
    total: z.number().int().min(0).optional(),
    /**
     * Keep every question's result as a trace line (with the no-latent answer) in this JSONL
     * file; a rerun continues it and the summary covers the whole file.
     */
    out: z.string().min(1).optional(),
    /** With out: start the file afresh. */
    overwrite: z.boolean().default(false),
    /** With out: what the records came from (fileSource / textSource); a continuation from another source is refused. */
    source: z.object({ what: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict().optional(),
    /** With out: run only this shard's records (see shard.ts). */
    shard: ShardSchema.optional(),
  })
  .strict()
  .refine((o) => !o.shard || o.out !== undefined, { message: 'a sharded eval needs out (the file that merge joins)', path: ['shard'] });
export type EvaluateOptions = z.input<typeof EvaluateOptionsSchema>;

export interface EvaluateProgress {
  /** Questions run in this run. */
  done: number;
  /** Questions whose results the out file already held. */
  skipped: number;
  total?: number;
  graded: number;
  correct: number;
  noReasoningCorrect: number;
  elapsedMs: number;
}

export interface EvaluateSummary {
  model: string;
  latentHead: string;
  latentSteps: number;
  /** Questions counted (with out: every line of the file). */
  questions: number;
  /** Questions run in this run (the rest came from the out file). */
  questionsThisRun: number;
  /** Questions whose data had a "#### X" answer; accuracies are over these. */
  graded: number;
  withLatents: { correct: number; accuracy: number | null };
  withoutLatents: { correct: number; accuracy: number | null };
  /** Main and no-latent answer tokens decoded in this run. */
  answerTokens: number;
  elapsedSeconds: number;
  questionsPerSecond: number;
  answerTokensPerSecond: number;
  /** True when the signal stopped the run; the numbers cover the questions finished before. */
  interrupted: boolean;
}

/**
 * Runs every record with and without latent steps (both in one batched pass) and counts correct
 * answers. With options.out the results are kept as trace lines and a rerun continues the file.
 * An abort ends the run early and returns the summary so far (interrupted: true).
 */
export async function evaluate(
  model: Model,
  records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>,
  options: EvaluateOptions & { signal?: AbortSignal; onProgress?: (p: EvaluateProgress) => void } = {},
): Promise<EvaluateSummary> {
  const { signal, onProgress, ...rest } = options;
  const o = parseOptions(EvaluateOptionsSchema, rest, 'evaluate options');
  const head = requireLatentHead(model, o.latentHead);
  const latentSteps = o.latentSteps ?? head.settings.steps;
  let questions = 0;
  let thisRun = 0;
  let graded = 0;
  let correct = 0;
  let noReasoningCorrect = 0;
  let answerTokens = 0;
  let interrupted = false;
  const started = Date.now();
  const isAbort = (e: unknown) => e instanceof Error && e.name === 'AbortError';
  if (o.out !== undefined) {
    // The trace file is the record of finished questions: what makes the run resumable.
    let last: TraceProgress | undefined;
    const counts = (p: { written: number; skipped: number; graded: number; correct: number; noReasoningCorrect: number; answerTokens: number }) => {
      thisRun = p.written;
      questions = p.written + p.skipped;
      graded = p.graded;
      correct = p.correct;
      noReasoningCorrect = p.noReasoningCorrect;
      answerTokens = p.answerTokens;
    };
    try {
      const t = await trace(model, records, {
        out: o.out,
        overwrite: o.overwrite,
        source: o.source,
        latentHead: head,
        latentSteps,
        format: o.format,
        maxAnswerTokens: o.maxAnswerTokens,
        threads: o.threads,
        noReasoning: true,
        total: o.total,
        shard: o.shard,
        command: 'eval',
        signal,
        onProgress: (p) => {
          last = p;
          onProgress?.({ done: p.written, skipped: p.skipped, total: o.total, graded: p.graded, correct: p.correct, noReasoningCorrect: p.noReasoningCorrect, elapsedMs: p.elapsedMs });
        },
      });
      counts(t);
      questions = t.lines;
    } catch (e) {
      if (!isAbort(e)) throw e;
      interrupted = true;
      if (last) counts(last);
    }
  } else {
    try {
      for await (const item of reasonStream(model, records, {
        latentHead: head,
        threads: o.threads,
        latentSteps,
        format: o.format,
        maxAnswerTokens: o.maxAnswerTokens,
        noReasoning: true,
        lensTopK: 1,
        signal,
      })) {
        questions++;
        answerTokens += item.result.answerTokens.length + (item.result.noReasoning?.answerTokens.length ?? 0);
        if (item.gold !== null) {
          graded++;
          if (isCorrect(item.result.answer, item.gold)) correct++;
          if (item.result.noReasoning && isCorrect(item.result.noReasoning.answer, item.gold)) noReasoningCorrect++;
        }
        onProgress?.({ done: questions, skipped: 0, total: o.total, graded, correct, noReasoningCorrect, elapsedMs: Date.now() - started });
      }
    } catch (e) {
      if (!isAbort(e)) throw e;
      interrupted = true;
    }
    thisRun = questions;
  }
  const secs = (Date.now() - started) / 1000;
  const rate = (x: number) => (secs > 0 ? x / secs : 0);
  return {
    model: model.info.path,
    latentHead: head.settings.path,
    latentSteps,
    questions,
    questionsThisRun: thisRun,
    graded,
    withLatents: { correct, accuracy: graded ? correct / graded : null },
    withoutLatents: { correct: noReasoningCorrect, accuracy: graded ? noReasoningCorrect / graded : null },
    answerTokens,
    elapsedSeconds: secs,
    questionsPerSecond: rate(thisRun),
    answerTokensPerSecond: rate(answerTokens),
    interrupted,
  };
}
