// make-tasks and pipeline end to end: the CLI on the built-in demo model (trace + capture +
// make-tasks, and the whole pipeline from a config), and the pipeline on the codi-tiny golden
// checkpoint with an interruption in make-tasks: the rerun skips the finished stages, continues the
// interrupted one where it stopped, and ends with the report of oracle vs baselines per task.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertHf } from '../lib/engine/convert.js';
import { parsePipelineConfig, readPipelineConfig, runPipeline, type PipelineEvent, type PipelineReport, type PipelineStage } from '../lib/study/pipeline.js';
import { TASKS } from '../lib/tasks/registry.js';
import { expectUserError, runCli, startCli, type CliResult } from './helpers/cli.js';
import { golden, projectRoot, sharedFile } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-pipeline-'));
// A fresh cache: the demo model is generated here on first use, as on a new machine.
const env = { LRO_CACHE: join(tmp, 'cache') };
process.env.LRO_CACHE = env.LRO_CACHE;
const cli = (args: string[]) => runCli(args, { env });
const gsm8k = () => sharedFile('data', 'gsm8k', 'test.jsonl');
const codiPath = join(tmp, 'codi-tiny.f32.gguf');


function expectReport(report: PipelineReport): void {
  expect(report.format).toBe('lro-pipeline-report');
  expect(Object.keys(report.tasks).sort()).toEqual(TASKS.map((t) => t.name).sort());
  let evaluated = 0;
  for (const [name, t] of Object.entries(report.tasks)) {
    if (!t.eval) continue;
    evaluated++;
    for (const c of [t.eval.oracle, t.eval.noVectors, t.eval.shuffled]) {
      expect(c.n, name).toBeGreaterThan(0);
      expect(c.accuracy).toBeGreaterThanOrEqual(0);
      expect(c.ci95![0]).toBeLessThanOrEqual(c.accuracy!);
      expect(c.ci95![1]).toBeGreaterThanOrEqual(c.accuracy!);
    }
    const hasReadout = ['logit_lens', 'answer_value', 'early_decode'].includes(name);
    expect(t.eval.logitLens !== null, `${name} logit-lens baseline`).toBe(hasReadout);
  }
  expect(evaluated).toBeGreaterThan(5);
  // The label of logit_lens is the readout itself: the baseline is exact by construction.
  if (report.tasks.logit_lens.eval) expect(report.tasks.logit_lens.eval.logitLens!.accuracy).toBe(1);
}

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('make-tasks CLI (demo model)', () => {
  const dir = join(tmp, 'mt');
  const data = join(tmp, 'gsm8k-3.jsonl');
  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(data, readFileSync(gsm8k(), 'utf8').split('\n').slice(0, 3).join('\n') + '\n');
    const t = await cli(['trace', '--data', data, '-o', join(dir, 'traces.jsonl'), '--early-decode', '--no-reasoning', '--ablations', 'zero,skip,noise', '--max-answer-tokens', '6', '--threads', '2', '-q']);
    expect(t.code, t.stderr).toBe(0);
    const c = await cli(['capture', '--data', data, '-o', join(dir, 'capture'), '--points', 'resid_post', '--layers', '1,2,3', '--max-answer-tokens', '6', '--threads', '2', '-q']);
    expect(c.code, c.stderr).toBe(0);
  });

  it('writes the three splits and prints the table of counts per task and split', async () => {
    const out = join(dir, 'tasks');
    const r = await cli(['make-tasks', '--traces', join(dir, 'traces.jsonl'), '--capture', join(dir, 'capture'), '-o', out, '--data', data, '--model', 'demo', '--split', '0.34,0.33,0.33', '--threads', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/make-tasks: 1\/1\/1 questions train\/val\/test; layers 1,2,3/);
    for (const t of TASKS) expect(r.stderr).toMatch(new RegExp(`^${t.name} +\\d+ +\\d+ +\\d+`, 'm'));
    expect(r.stderr).toMatch(/^eq_result +0 .*eval only/m);
    for (const f of ['train.jsonl', 'val.jsonl', 'test.jsonl', 'summary.json', 'extra/manifest.json', 'extra/facts.jsonl']) expect(existsSync(join(out, f)), f).toBe(true);
    const other = ['make-tasks', '--traces', join(dir, 'traces.jsonl'), '--capture', join(dir, 'capture'), '-o', out, '--tasks', 'step_identity,prompt', '--layers', '2', '--json', '-q'];
    // Other tasks into the same folder: refused, naming the difference, and nothing is touched.
    const before = readFileSync(join(out, 'train.jsonl'), 'utf8');
    expectUserError(await cli(other), /holds tasks made from other inputs or settings \(data: .*pass --overwrite/);
    expect(readFileSync(join(out, 'train.jsonl'), 'utf8')).toBe(before);
    const j = await cli([...other, '--overwrite']);
    expect(j.code, j.stderr).toBe(0);
    // The same command again continues the folder.
    expect((await cli(other)).code).toBe(0);
    const s = JSON.parse(j.stdout);
    expect(Object.keys(s.examples)).toEqual(['step_identity', 'prompt']);
    expect(s.layers).toEqual([2]);
    // step_identity: one example per latent step of the built-in model; prompt: one per question
    const steps = (JSON.parse(readFileSync(join(dir, 'traces.jsonl'), 'utf8').split('\n')[0]) as { steps: unknown[] }).steps.length - 1;
    expect(s.totals.train + s.totals.val + s.totals.test).toBe(3 * (steps + 1));
  });

  it('killed with SIGKILL during the extra runs, then rerun: the same task files as an uninterrupted run', async () => {
    const args = (out: string) => ['make-tasks', '--traces', join(dir, 'traces.jsonl'), '--capture', join(dir, 'capture'), '-o', out, '--data', data, '--model', 'demo', '--split', '0.34,0.33,0.33', '--threads', '2', '-q'];
    const whole = join(dir, 'whole');
    expect((await cli(args(whole))).code).toBe(0);
    const cut = join(dir, 'cut');
    const { child, done } = startCli(args(cut));
    while (!existsSync(join(cut, 'extra'))) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await done;
    const again = await cli(args(cut));
    expect(again.code, again.stderr).toBe(0);
    for (const f of ['train.jsonl', 'val.jsonl', 'test.jsonl']) expect(readFileSync(join(cut, f), 'utf8'), f).toBe(readFileSync(join(whole, f), 'utf8'));
  });

  it('gives one-line errors naming the file or option', async () => {
    const base = ['make-tasks', '--traces', join(dir, 'traces.jsonl'), '--capture', join(dir, 'capture'), '-o', join(dir, 'bad')];
    expectUserError(await cli([...base, '--layers', '0']), /manifest\.json: no resid_post\.0 captured/);
    expectUserError(await cli([...base, '--split', '0.5,0.5']), /--split.*three fractions/);
    expectUserError(await cli([...base, '--tasks', 'nope']), /unknown task "nope"/);
    expectUserError(await cli(['make-tasks', '--traces', join(dir, 'missing.jsonl'), '--capture', join(dir, 'capture'), '-o', join(dir, 'bad')]), /trace file not found: .*missing\.jsonl/);
  });
});

/** A pipeline config on the built-in model in dir (its out: dir/out), training for this many steps. */
function writeDemoConfig(dir: string, steps: number): string {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      out: 'out',
      model: 'demo',
      data: { path: gsm8k() },
      limits: { questions: 4, maxAnswerTokens: 6, maxPerQuestion: 2 },
      split: [0.5, 0.25, 0.25],
      training: { steps, batchSize: 4, lr: 0.003, loraR: 4, loraAlpha: 8 },
      eval: { maxTokens: 6, bootstrap: 200 },
      threads: 2,
    }),
  );
  return config;
}

describe('pipeline', () => {
  it('runs end to end on the built-in demo model from a config file, then skips every stage', async () => {
    const dir = join(tmp, 'demo-run');
    const config = writeDemoConfig(dir, 3);
    const r = await cli(['pipeline', config]);
    expect(r.code, r.stderr).toBe(0);
    for (const [i, s] of ['trace', 'capture', 'make-tasks', 'train-oracle', 'eval-oracle', 'variants', 'instruments', 'report'].entries()) expect(r.stderr).toContain(`pipeline: [${i + 1}/8] ${s}: `);
    const report = JSON.parse(readFileSync(join(dir, 'out', 'report.json'), 'utf8')) as PipelineReport;
    expectReport(report);
    expect(report.training.steps).toBe(3);
    const md = readFileSync(join(dir, 'out', 'report.md'), 'utf8');
    expect(md).toMatch(/\| task \| test n \| oracle \| no vectors \| shuffled \| logit lens \|/);
    expect(md).toMatch(/\| logit_lens \| \d+ \| .* \| 100\.0% /);
    const again = await cli(['pipeline', config, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr.match(/done before, skipped/g)).toHaveLength(8);
    expect(JSON.parse(again.stdout).createdAt).toBe(report.createdAt);
    const redo = await cli(['pipeline', config, '--from', 'report', '-q']);
    expect(redo.code, redo.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'out', 'report.json'), 'utf8')).createdAt).not.toBe(report.createdAt);
  });

  it('killed with SIGKILL in the middle (several points), then rerun: the same oracle, predictions and report as an uninterrupted run', async () => {
    const write = (dir: string) => writeDemoConfig(dir, 12);
    const whole = join(tmp, 'kill-whole');
    expect((await cli(['pipeline', write(whole), '-q'])).code).toBe(0);
    const cut = join(tmp, 'kill-cut');
    const config = write(cut);
    // Killed once while each of these stages is in flight (its marker says "running"), rerun after each.
    for (const stage of ['capture', 'make-tasks', 'train-oracle', 'eval-oracle']) {
      const marker = join(cut, 'out', 'stages', `${stage}.json`);
      const { child, done } = startCli(['pipeline', config, '-q'], { env });
      const t0 = Date.now();
      while (!(existsSync(marker) && readFileSync(marker, 'utf8').includes('"running"')) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 2));
      child.kill('SIGKILL');
      const killed = await done;
      expect(killed.signal, `${stage}: ${killed.stderr}`).toBe('SIGKILL');
    }
    const again = await cli(['pipeline', config, '-q']);
    expect(again.code, again.stderr).toBe(0);
    const read = (dir: string, f: string) => readFileSync(join(dir, 'out', f));
    for (const f of ['traces.jsonl', 'tasks/train.jsonl', 'tasks/test.jsonl', 'oracle/adapter.gguf', 'eval/predictions.jsonl']) expect(read(cut, f).equals(read(whole, f)), f).toBe(true);
    const tables = (dir: string) => {
      const r = JSON.parse(read(dir, 'report.json').toString('utf8')) as PipelineReport;
      return { tasks: r.tasks, training: { ...r.training, adapter: null } };
    };
    expect(tables(cut)).toEqual(tables(whole));
  });

  it('eval-oracle sharded over two workers, then merged: the predictions file and report of one run', async () => {
    const out = join(tmp, 'kill-whole', 'out');
    const args = (predictions: string) => ['eval-oracle', '--base', 'demo', '--adapter', join(out, 'oracle', 'adapter.gguf'), '--data', join(out, 'tasks', 'test.jsonl'), '--predictions', predictions, '--max-tokens', '6', '--bootstrap', '200', '--threads', '2', '--problems', join(out, 'traces.jsonl'), '--json', '-q'];
    const parts = join(tmp, 'preds.jsonl');
    for (const i of [1, 0]) {
      const r = await cli([...args(parts), '--shard', `${i}/2`]);
      expect(r.code, r.stderr).toBe(0);
    }
    const merged = join(tmp, 'preds-merged.jsonl');
    const m = await cli(['merge', '-o', merged, join(tmp, 'preds.shard-0-of-2.jsonl'), join(tmp, 'preds.shard-1-of-2.jsonl')]);
    expect(m.code, m.stderr).toBe(0);
    expect(readFileSync(merged, 'utf8')).toBe(readFileSync(join(out, 'eval', 'predictions.jsonl'), 'utf8'));
    const r = await cli([...args(merged), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    const one = JSON.parse(readFileSync(join(out, 'eval', 'report.json'), 'utf8')) as { tasks: unknown; overall: unknown };
    const got = JSON.parse(r.stdout) as typeof one;
    expect(got.tasks).toEqual(one.tasks);
    expect(got.overall).toEqual(one.overall);
    expectUserError(await cli(['eval-oracle', ...args(parts).slice(1, 7), '--shard', '0/2']), /a sharded run needs --predictions/);
  });

  it('validates the config: one line naming the file and the field', async () => {
    const bad = join(tmp, 'bad-config.json');
    writeFileSync(bad, JSON.stringify({ out: 'x', data: { path: gsm8k() }, training: { stepz: 3 } }));
    expectUserError(await cli(['pipeline', bad]), /bad-config\.json: field 'training': Unrecognized key\(s\) in object: 'stepz'/);
    writeFileSync(bad, JSON.stringify({ out: 'x', data: { path: gsm8k() }, tasks: ['ablation', 'mind_reading'] }));
    expectUserError(await cli(['pipeline', bad]), /field 'tasks': unknown task "mind_reading"/);
    writeFileSync(bad, JSON.stringify({ out: 'x', data: { path: gsm8k() }, split: [0.5, 0.4, 0.4] }));
    expectUserError(await cli(['pipeline', bad]), /field 'split': fractions must sum to 1/);
    expect(readPipelineConfig(join(projectRoot, 'examples', 'pipeline.demo.json')).model).toBe('demo');
  });

  it('codi-tiny golden: interrupted in make-tasks, the rerun skips trace and capture and continues the extra runs', async () => {
    await convertHf(golden('hf', 'codi-tiny'), codiPath, { type: 'f32', source: 'model.safetensors' });
    const config = parsePipelineConfig({
      out: join(tmp, 'codi-run'),
      model: codiPath,
      data: { path: gsm8k() },
      limits: { questions: 4, maxAnswerTokens: 8, maxPerQuestion: 2 },
      split: [0.5, 0.25, 0.25],
      trace: { ablations: ['zero'] },
      training: { steps: 2, batchSize: 4, lr: 0.001, loraR: 4, loraAlpha: 8 },
      eval: { maxTokens: 6, bootstrap: 200 },
      threads: 2,
    });
    const ac = new AbortController();
    const events: PipelineEvent[] = [];
    await expect(
      runPipeline(config, {
        signal: ac.signal,
        onEvent: (e) => events.push(e),
        onProgress: (stage, text) => {
          // Stop after the first question's extra runs are written.
          if (stage === 'make-tasks' && /^extras 1\//.test(text)) ac.abort();
        },
      }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(events.filter((e) => e.state === 'done').map((e) => e.stage)).toEqual(['trace', 'capture']);
    const facts = () => readFileSync(join(config.out, 'tasks', 'extra', 'facts.jsonl'), 'utf8').split('\n').filter(Boolean);
    expect(facts()).toHaveLength(1);

    const again: PipelineEvent[] = [];
    const r = await runPipeline(config, { onEvent: (e) => again.push(e) });
    expect(r.skipped).toEqual(['trace', 'capture'] as PipelineStage[]);
    expect(r.ran).toEqual(['make-tasks', 'train-oracle', 'eval-oracle', 'variants', 'instruments', 'report'] as PipelineStage[]);
    expect(again.find((e) => e.stage === 'make-tasks' && e.state === 'start')!.message).toBe('continuing an interrupted run');
    // The first question's extras were kept, not redone: one line per question.
    expect(facts()).toHaveLength(4);
    expectReport(r.report);
    expect(r.report.model).toBe(codiPath);

    // A changed training setting is refused without overwrite (nothing replaced unasked); with it,
    // training and what follows are redone, nothing before.
    await expect(runPipeline({ ...config, training: { ...config.training, steps: 3 } })).rejects.toThrow(/train-oracle outputs in .* were made from other settings or inputs; pass --overwrite/);
    const r2 = await runPipeline({ ...config, training: { ...config.training, steps: 3 } }, { overwrite: true });
    expect(r2.skipped).toEqual(['trace', 'capture', 'make-tasks', 'instruments']);
    expect(r2.report.training.steps).toBe(3);
  });
});
