// The two study stages of the pipeline (lib/study/pipeline.ts) after the main oracle is evaluated:
//   variants     recipe ablations: each variant trains its own oracle on a subset of the training
//                examples (tasks, layers) or with another LoRA rank, evaluated on the same test
//                examples (resumable: training from its checkpoint, eval from its predictions);
//   instruments  latent inversion and the causal map (patch-sweep) on the first test questions.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import type { CaptureManifest } from '../capture/capture-manifest.js';
import { evalOracle, type EvalOracleOptions, type EvalOracleReport } from '../oracle/eval-oracle.js';
import { invertLatent } from '../capture/invert.js';
import type { Model } from '../engine/model.js';
import { patchSweep } from '../reasoning/patch-sweep.js';
import { abortError } from '../core/errors.js';
import { numbersIn } from '../tasks/labels.js';
import { trainOracle, type TrainOracleOptions } from '../oracle/train-oracle.js';

export interface VariantSpec {
  name: string;
  tasks?: string[];
  layers?: number[];
  loraR?: number;
  loraAlpha?: number;
}

export interface VariantResult {
  name: string;
  tasks: string[] | null;
  layers: number[] | null;
  rank: number;
  trainExamples: number;
  loss: number | null;
  eval: EvalOracleReport;
}

/** Lines of a JSONL file kept by a predicate on the parsed line, to a file in the same folder (vector paths stay valid). */
async function filterJsonl(from: string, to: string, keep: (e: { task: string; layer: number | string }) => boolean): Promise<number> {
  if (!existsSync(from)) return 0;
  const kept = (await readFile(from, 'utf8')).split('\n').filter((l) => l.trim() && keep(JSON.parse(l) as { task: string; layer: number | string }));
  await writeFileAtomic(to, kept.map((l) => l + '\n').join(''));
  return kept.length;
}

/** Trains and evaluates one variant; its files are tasks/variant-<name>.*.jsonl and variants/<name>/. */
export async function runVariant(
  v: VariantSpec,
  paths: { tasks: string; dir: string },
  train: Omit<TrainOracleOptions, 'data' | 'val' | 'out' | 'resume'>,
  evalOptions: EvalOracleOptions,
  fresh: boolean,
  signal?: AbortSignal,
  onProgress?: (text: string) => void,
): Promise<VariantResult> {
  if (fresh) await rm(paths.dir, { recursive: true, force: true });
  await mkdir(paths.dir, { recursive: true });
  const keep = (e: { task: string; layer: number | string }) => (!v.tasks || v.tasks.includes(e.task)) && (!v.layers || v.layers.includes(Number(e.layer)));
  const file = (split: string) => join(paths.tasks, `variant-${v.name}.${split}.jsonl`);
  const n = await filterJsonl(join(paths.tasks, 'train.jsonl'), file('train'), keep);
  if (n === 0) throw new Error(`variant "${v.name}": no training example has its tasks and layers`);
  const nVal = await filterJsonl(join(paths.tasks, 'val.jsonl'), file('val'), keep);
  await filterJsonl(join(paths.tasks, 'test.jsonl'), file('test'), (e) => !v.layers || v.layers.includes(Number(e.layer)));
  const oracle = join(paths.dir, 'oracle');
  const s = await trainOracle(
    {
      ...train,
      ...(v.loraR !== undefined ? { loraR: v.loraR, loraAlpha: v.loraAlpha ?? 2 * v.loraR } : v.loraAlpha !== undefined ? { loraAlpha: v.loraAlpha } : {}),
      data: file('train'),
      ...(nVal > 0 ? { val: file('val') } : {}),
      out: oracle,
      resume: existsSync(join(oracle, 'run.json')),
    },
    { signal, onProgress: (p) => onProgress?.(`${v.name}: ${p.phase === 'train' ? `step ${p.step}/${p.totalSteps}` : p.phase}`) },
  );
  const ev = await evalOracle(train.base as string, s.adapter.gguf!, file('test'), {
    ...evalOptions,
    predictions: join(paths.dir, 'predictions.jsonl'),
    resume: true,
    includeExamples: false,
    signal,
    onProgress: (p) => onProgress?.(`${v.name}: eval ${p.done + p.skipped}/${p.total}`),
  });
  return { name: v.name, tasks: v.tasks ?? null, layers: v.layers ?? null, rank: s.rank, trainExamples: s.trainExamples, loss: s.loss, eval: ev };
}

export interface InstrumentsResult {
  format: 'lro-study-instruments';
  inversion: {
    record: string;
    question: string;
    point: string;
    steps: { step: number; candidates: { text: string; cosine: number }[] }[];
  }[];
  patch: {
    record: string;
    clean: string;
    corrupted: string;
    cleanAnswer: string;
    corruptedAnswer: string;
    points: string[];
    recovered: (number | null)[][];
  }[];
}

/** The question with its first number raised by one (the corrupted run of the causal map), or null without a number. */
export function corruptFirstNumber(q: string): string | null {
  const first = numbersIn(q)[0];
  if (!first) return null;
  return q.slice(0, first.index) + String(Number(first.value) + 1) + q.slice(first.index + first.text.length);
}

/** Inversion and patch-sweep on the first test questions; written to `out` (read back when it exists with the same settings). */
export async function runInstruments(
  model: Model,
  o: { capture: string; manifest: CaptureManifest; questions: { id: string; question: string }[]; invert: number; invertTokens: number; beam: number; patchPairs: number; latentHead?: string; maxAnswerTokens: number; threads: number; out: string },
  signal?: AbortSignal,
  onProgress?: (text: string) => void,
): Promise<InstrumentsResult> {
  const layers = o.manifest.settings.points.filter((p) => /^resid_post\.\d+$/.test(p)).map((p) => Number(p.split('.')[1]));
  const deepest = Math.max(...layers);
  const records = new Map(o.manifest.records.map((r) => [r.id, r]));
  const result: InstrumentsResult = { format: 'lro-study-instruments', inversion: [], patch: [] };
  for (const q of o.questions.slice(0, o.invert)) {
    const rec = records.get(q.id);
    if (!rec) continue;
    const n = rec.latentSteps ?? 0;
    const steps: InstrumentsResult['inversion'][number]['steps'] = [];
    let point = '';
    for (let k = 0; k < n; k++) {
      if (signal?.aborted) throw abortError();
      const r = await invertLatent(model, o.capture, q.id, k, { layer: deepest, maxTokens: o.invertTokens, beam: o.beam, top: 3, threads: o.threads, signal });
      point = r.point;
      steps.push({ step: k, candidates: r.candidates.map((c) => ({ text: c.text, cosine: c.cosine })) });
      onProgress?.(`invert ${q.id} step ${k + 1}/${n}`);
    }
    result.inversion.push({ record: q.id, question: q.question, point, steps });
  }
  let pairs = 0;
  for (const q of o.questions) {
    if (pairs >= o.patchPairs) break;
    const corrupted = corruptFirstNumber(q.question);
    if (!corrupted) continue;
    if (signal?.aborted) throw abortError();
    const r = await patchSweep(model, q.question, corrupted, { layers, latentHead: o.latentHead, maxAnswerTokens: o.maxAnswerTokens, threads: o.threads });
    pairs++;
    onProgress?.(`patch-sweep ${pairs}/${o.patchPairs}`);
    result.patch.push({ record: q.id, clean: q.question, corrupted, cleanAnswer: r.clean.answer, corruptedAnswer: r.corrupted.answer, points: r.points, recovered: r.recovered });
  }
  await writeFileAtomic(o.out, JSON.stringify(result) + '\n');
  return result;
}
