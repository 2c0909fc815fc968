// The supervised ceiling of the oracle study: a linear probe per task, layer and problem step,
// fitted on the training split's ground-truth labels (make-tasks' probe-train.jsonl, which the
// oracle never trains on) and asked about the same test examples as the oracle. Features: the
// example's vectors, concatenated. The fit is the engine's ridge classifier (z-scored features,
// one-hot targets); answers are the train split's label strings, so they score like the oracle's.
import { existsSync } from 'node:fs';
import { native } from '../core/native.js';
import { readOracleExamples, VectorStore, type OracleExample } from './oracle-data.js';

export interface ProbeCell {
  task: string;
  layer: number;
  /** The problem step the examples ask about (source.program_step or source.equation - 1), null for whole-chain tasks. */
  step: number | null;
  train: number;
  test: number;
  /** Test examples whose probe answer equals the gold answer. */
  correct: number;
  /** The most frequent train label, scored on the test examples. */
  majority: number;
}

export interface ProbeResult {
  /** The probe's answer per test example id. */
  answers: Map<string, string>;
  cells: ProbeCell[];
}

const vectorCount = (e: OracleExample) => (Array.isArray(e.vectors) ? e.vectors.length : e.vectors.rows.length);

function stepOf(e: OracleExample): number | null {
  const s = e.source as { program_step?: unknown; equation?: unknown };
  if (typeof s.program_step === 'number') return s.program_step;
  if (typeof s.equation === 'number') return s.equation - 1;
  return null;
}

/**
 * Fits and applies the probes. trainFile / testFile: oracle-format JSONL (vectors referenced into
 * capture shards); tasks: the tasks to probe; keep: the test example ids to answer (null: all).
 */
export async function probeTasks(
  trainFile: string,
  testFile: string,
  tasks: ReadonlySet<string>,
  width: number,
  options: { keep?: ReadonlySet<string> | null; lambda?: number } = {},
): Promise<ProbeResult> {
  const groups = new Map<string, { train: OracleExample[]; test: OracleExample[] }>();
  const keyOf = (e: OracleExample) => JSON.stringify([e.task, e.layer, stepOf(e), vectorCount(e)]);
  const add = async (file: string, side: 'train' | 'test') => {
    if (!existsSync(file)) return;
    for await (const e of readOracleExamples(file)) {
      if (!tasks.has(e.task) || (side === 'test' && options.keep && !options.keep.has(e.id))) continue;
      const k = keyOf(e);
      if (!groups.has(k)) groups.set(k, { train: [], test: [] });
      groups.get(k)![side].push(e);
    }
  };
  await add(trainFile, 'train');
  await add(testFile, 'test');
  const trainStore = new VectorStore(trainFile);
  const testStore = new VectorStore(testFile);
  const stack = async (store: VectorStore, es: OracleExample[], d: number) => {
    const x = new Float32Array(es.length * d);
    for (let i = 0; i < es.length; i++) x.set(await store.load(es[i], width), i * d);
    return x;
  };
  const answers = new Map<string, string>();
  const cells: ProbeCell[] = [];
  for (const { train, test } of groups.values()) {
    if (train.length === 0 || test.length === 0) continue;
    const classes = [...new Set(train.map((e) => e.answer))].sort();
    const index = new Map(classes.map((c, i) => [c, i]));
    const counts = classes.map((c) => train.filter((e) => e.answer === c).length);
    const mode = classes[counts.indexOf(Math.max(...counts))];
    let predicted: string[];
    if (classes.length === 1) predicted = test.map(() => classes[0]);
    else {
      const d = vectorCount(train[0]) * width;
      const labels = Int32Array.from(train, (e) => index.get(e.answer)!);
      const pred = native().ridgeClassify(await stack(trainStore, train, d), labels, await stack(testStore, test, d), d, classes.length, options.lambda ?? 1e-2);
      predicted = Array.from(pred, (c) => classes[c]);
    }
    test.forEach((e, i) => answers.set(e.id, predicted[i]));
    cells.push({
      task: test[0].task,
      layer: Number(test[0].layer),
      step: stepOf(test[0]),
      train: train.length,
      test: test.length,
      correct: test.filter((e, i) => predicted[i] === e.answer).length,
      majority: test.filter((e) => e.answer === mode).length,
    });
  }
  cells.sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : a.layer - b.layer || (a.step ?? -1) - (b.step ?? -1)));
  return { answers, cells };
}
