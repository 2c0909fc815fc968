// Reasoning traces: one JSON line per question with the answer, the logit lens of every latent
// step, early decodes and ablations, appended as each question finishes. A rerun continues after
// the last complete line, so an interrupted run loses at most the question in flight.
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { open, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { isCorrect } from '../core/answers.js';
import { writeFileAtomic } from '../core/atomic-file.js';
import { MANIFEST_FILE, PositionSelectorSchema } from './capture-manifest.js';
import { CaptureSink } from './capture-sink.js';
import { captureInputs, checkPointName, manifestModel, reasoningRecordEntry, reasoningSettings, reasoningTensors, type CaptureRecord } from './capture.js';
import { ShardRun, ShardSchema, SHARD_PARTITION, shardInfoPath } from '../core/shard.js';
import { InputError } from '../core/errors.js';
import { LatentHead } from '../reasoning/latent-head.js';
import type { Model } from '../engine/model.js';
import { parseOptions } from '../core/options.js';
import { reasonStream, requireLatentHead, type ReasonItem } from '../reasoning/reason.js';
import type { AblationKind, ReasonResult } from '../reasoning/reasoner.js';

export interface TraceLensEntry {
  id: number;
  token: string;
  prob: number;
}

export interface TraceStep {
  /** k = 0..N: h_0 is the state at the bot position, h_k the state after latent step k. */
  step: number;
  top_k: TraceLensEntry[];
  /** nats, of the logit lens distribution over the tokenizer's ids */
  entropy: number;
  norm: number;
  sparsity: number;
  cosine_to_prev: number | null;
}

export interface TraceDecode {
  answer: string;
  answer_tokens: number[];
}

/** One line of a trace file. */
export interface TraceLine {
  id: string;
  question: string | null;
  /** The number after "####" in the data's answer; null when the data has none. */
  gold: string | null;
  /** Whether the last number of the answer equals gold; null without gold. */
  correct: boolean | null;
  prompt_tokens: number[];
  answer: string;
  answer_tokens: number[];
  /** End-of-generation token that ended the answer; null when the token limit did. */
  stop_token: number | null;
  /** The answer without latent steps (prompt without bot, then eot); null when not asked for. */
  no_reasoning_answer: string | null;
  no_reasoning_answer_tokens: number[] | null;
  no_reasoning_correct: boolean | null;
  steps: TraceStep[];
  /** The answer decoded after k = 0..N latent steps (k = N is the answer itself); [] when not asked for. */
  early_decodes: (TraceDecode & { latents: number })[];
  /** Per kind, one branch per latent step ablated; {} when not asked for. */
  ablations: Partial<Record<AblationKind, (TraceDecode & { step: number })[]>>;
}

// The engine's numbers are float32: print the shortest decimal that reads back as the same float32.
function f32(x: number): number {
  if (!Number.isFinite(x)) return x;
  const v = Math.fround(x);
  for (let p = 1; p <= 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return s;
  }
  return v;
}

/** The trace line of one reasoning result. */
export function traceLine(record: CaptureRecord, gold: string | null, r: ReasonResult): TraceLine {
  const decode = (d: { answer: string; answerTokens: number[] }): TraceDecode => ({ answer: d.answer, answer_tokens: d.answerTokens });
  const ablations: TraceLine['ablations'] = {};
  for (const [kind, list] of Object.entries(r.ablations) as [AblationKind, NonNullable<ReasonResult['ablations'][AblationKind]>][])
    ablations[kind] = list.map((a) => ({ step: a.step, ...decode(a) }));
  return {
    id: record.id,
    question: typeof record.text === 'string' ? record.text : null,
    gold,
    correct: gold === null ? null : isCorrect(r.answer, gold),
    prompt_tokens: r.promptTokens,
    answer: r.answer,
    answer_tokens: r.answerTokens,
    stop_token: r.stopToken,
    no_reasoning_answer: r.noReasoning ? r.noReasoning.answer : null,
    no_reasoning_answer_tokens: r.noReasoning ? r.noReasoning.answerTokens : null,
    no_reasoning_correct: gold === null || !r.noReasoning ? null : isCorrect(r.noReasoning.answer, gold),
    steps: r.steps.map((s) => ({
      step: s.step,
      top_k: s.topK.map((t) => ({ id: t.id, token: t.token, prob: f32(t.prob) })),
      entropy: f32(s.entropy),
      norm: f32(s.norm),
      sparsity: f32(s.sparsity),
      cosine_to_prev: s.cosineToPrev === null ? null : f32(s.cosineToPrev),
    })),
    early_decodes: r.earlyDecodes.map((e) => ({ latents: e.latents, ...decode(e) })),
    ablations,
  };
}

/** What a trace file's lines say about the settings that made them (compared on resume). */
interface TraceShape {
  latentSteps: number;
  lensTopK: number;
  earlyDecode: boolean;
  noReasoning: boolean;
  ablations: string[];
}

export function shapeOf(line: TraceLine): TraceShape {
  return {
    latentSteps: line.steps.length - 1,
    lensTopK: line.steps[0]?.top_k.length ?? 0,
    earlyDecode: line.early_decodes.length > 0,
    noReasoning: line.no_reasoning_answer !== null,
    ablations: Object.keys(line.ablations).sort(),
  };
}

export interface TraceFileState {
  /** Ids of the complete lines. */
  ids: Set<string>;
  /** The first complete line (its settings are compared on resume). */
  first: TraceLine | null;
  /** Bytes of a cut-off last line that were dropped. */
  truncatedBytes: number;
}

/**
 * Reads a trace file for resuming, line by line (onLine sees each complete line): the ids of its
 * complete lines; a partial last line (a run killed mid-write) is cut off the file. A complete
 * line that is not a trace line is an error.
 */
export async function readTraceFile(path: string, onLine?: (line: TraceLine) => void): Promise<TraceFileState> {
  const st = await stat(path).catch(() => null);
  if (st && !st.isFile()) throw new InputError(`${path} is not a file`);
  const size = st ? st.size : -1;
  const state: TraceFileState = { ids: new Set(), first: null, truncatedBytes: 0 };
  if (size <= 0) return state;
  let carry: Buffer = Buffer.alloc(0);
  let complete = 0; // bytes of complete lines
  let lineNo = 0;
  const take = (buf: Buffer) => {
    lineNo++;
    complete += buf.length + 1;
    const text = buf.toString('utf8');
    if (text.trim() === '') return;
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch {
      throw new InputError(`${path}: line ${lineNo} is not JSON; not a trace file? (choose another --out, or --overwrite)`);
    }
    const line = o as TraceLine;
    if (typeof line !== 'object' || line === null || typeof line.id !== 'string' || !Array.isArray(line.steps))
      throw new InputError(`${path}: line ${lineNo} is not a trace line (no "id" or "steps"); choose another --out, or --overwrite`);
    if (state.ids.has(line.id)) throw new InputError(`${path}: line ${lineNo}: id "${line.id}" appears twice`);
    state.ids.add(line.id);
    state.first ??= line;
    onLine?.(line);
  };
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    let nl: number;
    while ((nl = buf.indexOf(0x0a)) >= 0) {
      take(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
    }
    carry = Buffer.from(buf);
  }
  if (complete < size) {
    state.truncatedBytes = size - complete;
    await truncate(path, complete);
  }
  return state;
}

export const TraceOptionsSchema = z
  .object({
    /** The JSONL file; continued when it exists (unless overwrite). */
    out: z.string().min(1),
    /** Start the file afresh instead of continuing it. */
    overwrite: z.boolean().default(false),
    /** What the records came from (fileSource / textSource); a continuation from another source is refused. */
    source: z.object({ what: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict().optional(),
    latentSteps: z.number().int().min(0).max(4096).optional(),
    format: z.enum(['codi-answer-only', 'codi', 'plain']).optional(),
    maxAnswerTokens: z.number().int().min(0).max(1 << 20).default(32),
    temperature: z.number().min(0).default(0),
    seed: z.number().int().min(0).default(0),
    earlyDecode: z.boolean().default(false),
    ablations: z.array(z.enum(['zero', 'skip', 'noise'])).default([]),
    noiseScale: z.number().min(0).finite().default(1),
    noReasoning: z.boolean().default(false),
    lensTopK: z.number().int().min(1).max(1000).default(10),
    threads: z.number().int().min(0).max(1024).default(0),
    kvType: z.enum(['f32', 'f16']).default('f32'),
    latentHead: z.union([z.string().min(1), z.custom<LatentHead>((v) => v instanceof LatentHead, { message: 'expected a file path or a LatentHead' })]).optional(),
    /** Also capture activations of the same runs into a capture folder (continued with the trace). */
    capture: z
      .object({
        out: z.string().min(1),
        points: z.array(z.string().min(1)).min(1),
        positions: z.array(PositionSelectorSchema).min(1).optional(),
        dtype: z.enum(['f32', 'f16', 'bf16']).default('f32'),
        shardBytes: z.number().int().positive().default(256 * 1024 * 1024),
        flushIntervalMs: z.number().int().min(0).default(60_000),
      })
      .strict()
      .optional(),
    /** Records expected (progress only). */
    total: z.number().int().min(0).optional(),
    /** Run only this shard's records (see shard.ts); the outputs get shard files for `merge`. */
    shard: ShardSchema.optional(),
    /** The command named in the shard files. */
    command: z.enum(['trace', 'eval']).default('trace'),
  })
  .strict();
export type TraceOptions = z.input<typeof TraceOptionsSchema>;

export interface TraceProgress {
  /** Lines written in this run. */
  written: number;
  /** Records already in the file (and capture) that were passed over. */
  skipped: number;
  total?: number;
  id: string;
  /** Over the whole file: graded lines and correct answers with and without latents. */
  graded: number;
  correct: number;
  noReasoningCorrect: number;
  /** Answer tokens decoded in this run (main and no-reasoning answers). */
  answerTokens: number;
  elapsedMs: number;
}

export interface TraceSummary {
  out: string;
  /** Lines in the file now. */
  lines: number;
  written: number;
  skipped: number;
  /** Bytes of a cut-off last line removed before continuing. */
  truncatedBytes: number;
  graded: number;
  correct: number;
  noReasoningCorrect: number;
  /** Answer tokens decoded in this run (main and no-reasoning answers). */
  answerTokens: number;
  elapsedMs: number;
  captureRecords: number | null;
}

/**
 * Traces records into options.out, one JSON line each (see TraceLine), continuing an existing
 * file after its last complete line. Deterministic for a given seed: a resumed file equals an
 * uninterrupted one. With options.capture, the same runs' activations go to a capture folder.
 */
export async function trace(
  model: Model,
  records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>,
  options: TraceOptions & { signal?: AbortSignal; onProgress?: (p: TraceProgress) => void },
): Promise<TraceSummary> {
  const { signal, onProgress, ...rest } = options;
  const o = parseOptions(TraceOptionsSchema, rest, 'trace options');
  const head = requireLatentHead(model, o.latentHead);
  const latentSteps = o.latentSteps ?? head.settings.steps;
  const want: TraceShape = {
    latentSteps,
    // A vocabulary smaller than the request gives fewer lens entries a step.
    lensTopK: Math.min(o.lensTopK, model.info.nVocab),
    earlyDecode: o.earlyDecode,
    noReasoning: o.noReasoning,
    ablations: latentSteps > 0 ? [...new Set(o.ablations)].sort() : [],
  };
  if (o.capture) {
    for (const p of o.capture.points) checkPointName(p, model.info.nLayer, true);
    if (new Set(o.capture.points).size !== o.capture.points.length) throw new InputError('capture points contain duplicates');
  }

  let graded = 0;
  let correct = 0;
  let noReasoningCorrect = 0;
  const tally = (l: TraceLine) => {
    if (l.correct === null || l.correct === undefined) return;
    graded++;
    if (l.correct) correct++;
    if (l.no_reasoning_correct) noReasoningCorrect++;
  };
  // What the lines cannot show (the model, the decoding settings) is kept beside the trace file,
  // so a resume with another model or seed is refused instead of mixing two runs in one file.
  const settingsPath = `${o.out}.settings.json`;
  const manifestModelBlock = await manifestModel(model);
  const inputs = await captureInputs(head, o.source);
  const runSettings = {
    model: { sha256: manifestModelBlock.sha256, fileSize: model.info.fileSize },
    latentHead: { sha256: inputs.latentHeadSha256 },
    source: o.source ?? null,
    format: o.format ?? head.settings.promptFormat,
    maxAnswerTokens: o.maxAnswerTokens,
    temperature: o.temperature,
    seed: o.seed,
    noiseScale: o.noiseScale,
    kvType: o.kvType,
    ...(o.shard ? { shard: { ...o.shard, partition: SHARD_PARTITION } } : {}),
  };
  const traceShardFile = shardInfoPath(o.out, 'file');
  const captureShardFile = o.capture ? shardInfoPath(o.capture.out, 'folder') : null;
  const shardRun = await ShardRun.open(o.shard, o.command, [
    { output: o.out, info: traceShardFile },
    ...(o.capture ? [{ output: o.capture.out, info: captureShardFile! }] : []),
  ]);
  let state: TraceFileState = { ids: new Set(), first: null, truncatedBytes: 0 };
  if (!o.overwrite) {
    state = await readTraceFile(o.out, tally);
    if (state.first && existsSync(settingsPath)) {
      let have: Record<string, unknown>;
      try {
        have = JSON.parse(readFileSync(settingsPath, 'utf8')) as Record<string, unknown>;
      } catch {
        throw new InputError(`${settingsPath} is not valid JSON; remove it to continue ${o.out}, or use --overwrite`);
      }
      for (const [k, v] of Object.entries(runSettings))
        if (JSON.stringify(have[k]) !== JSON.stringify(v))
          throw new InputError(
            `${o.out} was traced with other settings (${k} is ${JSON.stringify(have[k])} there, ${JSON.stringify(v)} now); continue it with the same ones, or use another --out or --overwrite`,
          );
    }
    const first = state.first;
    if (first) {
      const have = shapeOf(first);
      for (const k of Object.keys(want) as (keyof TraceShape)[])
        if (JSON.stringify(have[k]) !== JSON.stringify(want[k]))
          throw new InputError(
            `${o.out} was traced with other settings (${k} is ${JSON.stringify(have[k])} there, ${JSON.stringify(want[k])} now); continue it with the same ones, or use another --out or --overwrite`,
          );
    }
  }

  let sink: CaptureSink | undefined;
  if (o.capture) {
    if (o.overwrite && (await stat(join(o.capture.out, MANIFEST_FILE)).then(() => true, () => false)))
      throw new InputError(`${o.capture.out} already holds a capture; --overwrite starts only the trace file afresh: remove the folder or choose another`);
    sink = await CaptureSink.open({
      out: o.capture.out,
      resume: true,
      shardBytes: o.capture.shardBytes,
      flushIntervalMs: o.capture.flushIntervalMs,
      model: manifestModelBlock,
      inputs,
      settings: {
        points: o.capture.points,
        dtype: o.capture.dtype,
        addBos: true,
        parseSpecial: false,
        batchSize: 512,
        kvType: o.kvType,
        positions: o.capture.positions ?? null,
        reasoning: reasoningSettings(head, { ...o, latentSteps }),
      },
    });
  }

  let fh;
  try {
    await writeFileAtomic(settingsPath, JSON.stringify(runSettings, null, 1) + '\n');
    fh = await open(o.out, o.overwrite ? 'w' : 'a');
    await shardRun?.write(traceShardFile, [], false);
    if (sink) await shardRun?.write(captureShardFile!, [], false);
  } catch (e) {
    throw new InputError(`${o.out}: cannot open for writing (${(e as Error).message})`);
  }
  const started = Date.now();
  let written = 0;
  let skipped = 0;
  let answerTokens = 0;
  try {
    const stream = reasonStream(model, shardRun ? shardRun.filter(records) : records, {
      latentHead: head,
      threads: o.threads,
      kvType: o.kvType,
      latentSteps,
      format: o.format,
      maxAnswerTokens: o.maxAnswerTokens,
      temperature: o.temperature,
      seed: o.seed,
      earlyDecode: o.earlyDecode,
      ablations: want.ablations as AblationKind[],
      noiseScale: o.noiseScale,
      noReasoning: o.noReasoning,
      lensTopK: o.lensTopK,
      ...(o.capture ? { capture: o.capture.points, capturePositions: o.capture.positions } : {}),
      signal,
      // A record is done when the file has its line and the capture (if any) lists it.
      skip: (r) => state.ids.has(r.id) && (!sink || sink.has(r.id)),
      onProgress: (p) => {
        skipped = p.skipped;
        onProgress?.({ written, skipped, total: o.total, id: p.id, graded, correct, noReasoningCorrect, answerTokens, elapsedMs: Date.now() - started });
      },
    });
    for await (const item of stream as AsyncIterable<ReasonItem>) {
      if (!state.ids.has(item.record.id)) {
        const line = traceLine(item.record, item.gold, item.result);
        await fh.write(JSON.stringify(line) + '\n');
        state.ids.add(item.record.id);
        written++;
        answerTokens += line.answer_tokens.length + (line.no_reasoning_answer_tokens?.length ?? 0);
        tally(line);
      }
      if (sink && !sink.has(item.record.id))
        await sink.add(reasoningRecordEntry(item.record, item.result, head.settings.eotId), reasoningTensors(item.result, o.capture!.points));
    }
    await fh.sync();
    if (sink) await sink.finish();
    await shardRun?.write(traceShardFile, state.ids, true);
    if (sink) await shardRun?.write(captureShardFile!, sink.manifest.records.map((r) => r.id), true);
  } catch (e) {
    await sink?.salvage();
    throw e;
  } finally {
    await fh.close();
  }
  return {
    out: o.out,
    lines: state.ids.size,
    written,
    skipped,
    truncatedBytes: state.truncatedBytes,
    graded,
    correct,
    noReasoningCorrect,
    answerTokens,
    elapsedMs: Date.now() - started,
    captureRecords: sink ? sink.manifest.records.length : null,
  };
}
