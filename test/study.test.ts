// The organism study (issue 12) on the shipped organism: the ground-truth tasks' labels checked
// against the problems' programs as written in the data file, the probe against data whose labels
// are (or are not) linearly decodable, the question-only baseline, the study stages of the
// pipeline, and both HTML reports rendered in headless Chromium.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinModel } from '../lib/engine/demo-model.js';
import { evalOracle } from '../lib/oracle/eval-oracle.js';
import { loadModel } from '../lib/engine/model.js';
import { beatsBaselines, parsePipelineConfig, runPipeline, type PipelineReport } from '../lib/study/pipeline.js';
import { probeTasks } from '../lib/oracle/probe.js';
import { corruptFirstNumber, type InstrumentsResult } from '../lib/study/study.js';
import { findChromium, renderInChromium } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { projectRoot } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-study-'));
const out = join(tmp, 'out');
const data = join(projectRoot, 'examples', 'organism-problems.jsonl');
const GT = ['step_result', 'step_operation', 'step_quantity', 'value_computed', 'step_thinking'];
let report: PipelineReport;

interface Step {
  op: string;
  operands: number[];
  result: number;
  quantity: string;
}
const problems = new Map<string, { question: string; program: Step[] }>(
  readFileSync(data, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { id: string; question: string; program: Step[] })
    .map((p) => [p.id, p]),
);
const jsonl = (p: string) =>
  existsSync(p)
    ? readFileSync(p, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string; task: string; split: string; question: string; answer: string; layer: number; source: Record<string, unknown>; readout?: string })
    : [];

beforeAll(async () => {
  const config = parsePipelineConfig({
    out,
    model: 'organism',
    data: { path: data },
    limits: { questions: 16, maxAnswerTokens: 6, maxPerQuestion: 0 },
    tasks: ['ablation', 'early_decode', ...GT],
    split: [0.5, 0.25, 0.25],
    training: { steps: 4, batchSize: 4, lr: 0.003, loraR: 4, loraAlpha: 8 },
    eval: { maxTokens: 6, bootstrap: 100 },
    variants: [{ name: 'ablation-only', tasks: ['ablation'], loraR: 2 }],
    instruments: { invert: 1, invertTokens: 2, beam: 2, patchPairs: 1 },
    threads: 2,
  });
  report = (await runPipeline(config)).report;
}, 600_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('ground-truth tasks from the program', () => {
  it('label every step as the data file says, on the latents that stand for it (2 per step in the organism recipe)', async () => {
    const model = await loadModel(builtinModel().model);
    const recipe = JSON.parse(String(model.metadata()['lro.organism.recipe'])) as { method: string; coconut: { latentsPerStep: number } };
    model.dispose();
    expect(recipe.method).toBe('coconut');
    const per = recipe.coconut.latentsPerStep;
    const ops: Record<string, string> = { '+': ' addition', '-': ' subtraction', '*': ' multiplication', '/': ' division' };
    const seen = new Set<string>();
    for (const f of ['val.jsonl', 'test.jsonl', 'probe-train.jsonl'])
      for (const e of jsonl(join(out, 'tasks', f))) {
        if (!GT.includes(e.task)) continue;
        seen.add(e.task);
        const p = problems.get(String(e.source.record))!;
        const steps = e.source.steps as number[];
        if (e.task === 'value_computed') {
          expect(steps).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
          const x = Number(e.source.number);
          const computed = p.program.some((s) => s.result === x);
          expect(e.answer).toBe(computed ? ' Yes' : ' No');
          if (!computed) expect(p.program.flatMap((s) => s.operands).includes(x) || p.question.includes(String(x))).toBe(false);
          continue;
        }
        const j = e.source.program_step as number;
        expect(steps).toEqual(Array.from({ length: per }, (_, i) => j * per + i));
        const s = p.program[j];
        if (e.task === 'step_result' || e.task === 'step_thinking') expect(e.answer).toBe(` ${s.result}`);
        if (e.task === 'step_operation') expect(e.answer).toBe(ops[s.op]);
        if (e.task === 'step_quantity') expect(e.answer).toBe(` ${s.quantity}`);
        if (e.task === 'step_thinking') {
          expect(j).toBeLessThan(p.program.length - 1);
          expect(e.source.final).toBe(String(p.program[p.program.length - 1].result));
          expect(['What is the model thinking about?', 'What does this step compute?']).toContain(e.question);
        }
      }
    expect([...seen].sort()).toEqual([...GT].sort());
  });

  it('never reach train.jsonl; their training-split examples go to probe-train.jsonl only', () => {
    const train = jsonl(join(out, 'tasks', 'train.jsonl'));
    expect(train.length).toBeGreaterThan(0);
    expect(train.filter((e) => GT.includes(e.task))).toEqual([]);
    const probe = jsonl(join(out, 'tasks', 'probe-train.jsonl'));
    expect(probe.length).toBeGreaterThan(0);
    expect(new Set(probe.map((e) => e.split))).toEqual(new Set(['train']));
    expect(probe.every((e) => GT.includes(e.task))).toBe(true);
    const trainQuestions = new Set(train.map((e) => e.source.record));
    for (const e of probe) expect(trainQuestions.has(e.source.record)).toBe(true);
  });
});

describe('linear probe', () => {
  const width = 6;
  const write = (file: string, rows: { answer: string; v: number[] }[], split: string) =>
    writeFileSync(file, rows.map((r, i) => JSON.stringify({ id: `${split}${i}`, task: 't', split, layer: 1, question: 'q', answer: r.answer, vectors: [r.v], source: {} })).join('\n') + '\n');
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  const sample = (n: number, decodable: boolean) =>
    Array.from({ length: n }, (_, i) => {
      const c = i % 3;
      const v = Array.from({ length: width }, (_, d) => (decodable && d === c ? 3 : 0) + 0.3 * rand());
      return { answer: ` c${decodable ? c : Math.floor((rand() + 0.5) * 3)}`, v };
    });

  it('reads labels that are linear in the vectors, and stays near chance on labels that are not', async () => {
    const dir = join(tmp, 'probe');
    mkdirSync(dir, { recursive: true });
    for (const decodable of [true, false]) {
      write(join(dir, 'train.jsonl'), sample(90, decodable), 'train');
      write(join(dir, 'test.jsonl'), sample(60, decodable), 'test');
      const r = await probeTasks(join(dir, 'train.jsonl'), join(dir, 'test.jsonl'), new Set(['t']), width);
      expect(r.cells).toHaveLength(1);
      const acc = r.cells[0].correct / r.cells[0].test;
      if (decodable) expect(acc).toBe(1);
      else expect(acc).toBeLessThan(0.6);
      expect(r.answers.size).toBe(60);
    }
  });
});

describe('the study in the pipeline', () => {
  it('reports every baseline per task, the probe table, the seed-failure counts and the variants', () => {
    const test = jsonl(join(out, 'tasks', 'test.jsonl'));
    for (const t of GT) {
      const e = report.tasks[t].eval!;
      expect(report.tasks[t].groundTruth).toBe(true);
      expect(e.oracle.n).toBe(test.filter((x) => x.task === t).length);
      expect(e.questionOnly!.n).toBe(e.oracle.n);
    }
    expect(report.tasks.ablation.groundTruth).toBe(false);
    expect(report.tasks.step_result.eval!.probe!.n).toBe(report.tasks.step_result.eval!.oracle.n);
    expect(report.tasks.value_computed.eval!.probe).toBeNull();
    expect(report.tasks.step_result.eval!.logitLens!.n).toBeGreaterThan(0);
    const cells = report.probe.filter((c) => c.task === 'step_result');
    expect(new Set(cells.map((c) => c.layer))).toEqual(new Set(report.layers));
    expect(new Set(cells.map((c) => c.step))).toEqual(new Set([0, 1, 2]));
    for (const asked of ['thinking', 'compute']) {
      const row = report.seedFailure.find((f) => f.asked === asked)!;
      const question = asked === 'thinking' ? 'What is the model thinking about?' : 'What does this step compute?';
      expect(row.n).toBe(test.filter((x) => x.task === 'step_thinking' && x.question === question).length);
    }
    expect(report.variants.map((v) => [v.name, v.rank, v.tasks])).toEqual([['ablation-only', 2, ['ablation']]]);
    expect(report.variants[0].trainExamples).toBe(jsonl(join(out, 'tasks', 'train.jsonl')).filter((e) => e.task === 'ablation').length);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/\| task \| test n \| oracle \| no vectors \| shuffled \| logit lens \| question only \| probe \| reads \|/);
    expect(md).toContain("## The seed's failure");
    expect(md).toContain('| ablation-only | ablation | all | 2 |');
  });

  it('runs the instruments: inversion of every latent step and a patch-swept pair', () => {
    const ins = JSON.parse(readFileSync(join(out, 'instruments.json'), 'utf8')) as InstrumentsResult;
    expect(ins.inversion).toHaveLength(1);
    expect(ins.inversion[0].steps.map((s) => s.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const s of ins.inversion[0].steps) for (const c of s.candidates) expect(Math.abs(c.cosine)).toBeLessThanOrEqual(1 + 1e-6);
    expect(ins.patch).toHaveLength(1);
    expect(ins.patch[0].corrupted).toBe(corruptFirstNumber(ins.patch[0].clean));
    expect(ins.patch[0].points[0]).toBe('input');
    expect(corruptFirstNumber('Mia has 7 shells and 12 cups.')).toBe('Mia has 8 shells and 12 cups.');
    expect(corruptFirstNumber('no numbers')).toBeNull();
  });

  it('marks a task as read from the vectors only when the oracle interval clears both baselines', () => {
    const s = (lo: number, hi: number) => ({ n: 10, accuracy: (lo + hi) / 2, ci95: [lo, hi] as [number, number] });
    expect(beatsBaselines(s(0.5, 0.9), [s(0.1, 0.3), s(0.2, 0.4)])).toBe(true);
    expect(beatsBaselines(s(0.35, 0.9), [s(0.1, 0.3), s(0.2, 0.4)])).toBe(false);
    expect(beatsBaselines({ n: 0, accuracy: null, ci95: null }, [s(0, 0.1)])).toBe(false);
  });

  it('question-only answers come from the base model alone: the same under another adapter; a record missing from the problems file is named', async () => {
    const test = join(out, 'tasks', 'test.jsonl');
    const traces = join(out, 'traces.jsonl');
    const base = builtinModel().model;
    const a = await evalOracle(base, join(out, 'oracle', 'adapter.gguf'), test, { problems: traces, limit: 8, maxTokens: 6, bootstrap: 0, threads: 2 });
    const b = await evalOracle(base, join(out, 'variants', 'ablation-only', 'oracle', 'adapter.gguf'), test, { problems: traces, limit: 8, maxTokens: 6, bootstrap: 0, threads: 2 });
    expect(a.predictions!.map((p) => p.questionOnly)).toEqual(b.predictions!.map((p) => p.questionOnly));
    expect(a.predictions!.every((p) => typeof p.questionOnly === 'string')).toBe(true);
    const first = jsonl(test)[0];
    const partial = join(tmp, 'partial.jsonl');
    writeFileSync(partial, readFileSync(traces, 'utf8').split('\n').filter((l) => l && !l.includes(`"id":"${first.source.record}"`)).join('\n') + '\n');
    await expect(evalOracle(base, join(out, 'oracle', 'adapter.gguf'), test, { problems: partial, limit: 2, bootstrap: 0 })).rejects.toThrow(
      new RegExp(`test\\.jsonl:1: record "${first.source.record}" is not in .*partial\\.jsonl`),
    );
  });
});

describe('HTML reports in a real browser', () => {
  const chromium = findChromium();
  const check = async (html: string, name: string, minCharts: number) => {
    expect(statSync(html).size).toBeGreaterThan(1000);
    const text = readFileSync(html, 'utf8');
    expect(text).not.toMatch(/https?:\/\/|<script|<link|src=/i);
    const r = await renderInChromium(chromium!, html, join(tmp, `${name}.png`));
    expect(r.console).toEqual([]);
    expect(r.network).toEqual([]);
    expect(r.svgs.length).toBeGreaterThanOrEqual(minCharts);
    for (const s of r.svgs) {
      expect(s.w).toBeGreaterThan(0);
      expect(s.h).toBeGreaterThan(0);
      expect(s.shapes).toBeGreaterThan(0);
    }
    const png = readFileSync(r.screenshot);
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(png.length).toBeGreaterThan(20_000);
    process.stderr.write(`HTML report screenshot: ${r.screenshot}\n`);
  };

  it.skipIf(!chromium)('report.html of the pipeline: accuracy bars, probe table, ablations, logit lens, causal map render', async () => {
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    for (const h of ['Accuracy per task', 'Linear probe (step × layer)', "The seed's failure", 'Recipe ablations', 'Ablation effect', 'Logit lens', 'Causal map', 'Latent inversion'])
      expect(html).toContain(h);
    // bars, probe, variants, ablation matrix, 3 sample logit lenses, causal map
    await check(join(out, 'report.html'), 'study', 8);
  }, 180_000);

  it.skipIf(!chromium)('lro-native report traces.jsonl --out trace.html renders any trace', async () => {
    const html = join(tmp, 'trace.html');
    const r = await runCli(['report', join(out, 'traces.jsonl'), '--out', html, '--samples', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('report: 16 questions');
    await check(html, 'trace', 3);
    const bad = await runCli(['report', join(tmp, 'nope.jsonl'), '--out', html]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/trace file not found: .*nope\.jsonl/);
  }, 180_000);

  it('finds Chromium where .ci/run installs it', () => {
    if (process.env.CI) expect(chromium, 'chromium is missing: .ci/run installs Debian\'s chromium').not.toBeNull();
  });
});
