// `lro-native make-tasks` (oracle examples from traces + capture) and `lro-native pipeline`
// (trace -> capture -> make-tasks -> train-oracle -> eval-oracle -> report from one config).
import { Command, InvalidArgumentError, Option } from 'commander';
import { InputError } from '../../lib/core/errors.js';
import { makeTasks, type MakeTasksProgress, type MakeTasksSummary } from '../../lib/study/make-tasks.js';
import { PIPELINE_STAGES, readPipelineConfig, runPipeline, type PipelineStage } from '../../lib/study/pipeline.js';
import { shardPath } from '../../lib/core/shard.js';
import { TASKS } from '../../lib/tasks/registry.js';
import { parseSplitFractions } from '../../lib/tasks/split.js';
import { shardOf, shardOptions, type ShardCliOptions, floatArg, intArg, interruptSignal, isAbort, layersArg, progressLine, threadsArg } from '../cli-util.js';

interface MakeTasksCliOptions extends ShardCliOptions {
  traces: string;
  capture: string;
  out: string;
  tasks: string;
  overwrite?: boolean;
  layers?: 'all' | number[];
  split: [number, number, number];
  seed: number;
  data?: string;
  model?: string;
  latentHead?: string;
  maxPerQuestion: number;
  headView: boolean;
  trainEvalOnly?: boolean;
  tamperNoise: number;
  cfThreshold: number | 'median';
  threads: number;
  json?: boolean;
  quiet?: boolean;
}

function splitArg(value: string): [number, number, number] {
  try {
    return parseSplitFractions(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message.replace(/^--split: /, ''));
  }
}

function thresholdArg(value: string): number | 'median' {
  if (value.trim() === 'median') return 'median';
  return floatArg(0, 2)(value);
}

function summaryTable(s: MakeTasksSummary): string {
  const names = Object.keys(s.examples);
  const w = Math.max(4, ...names.map((n) => n.length)) + 2;
  const num = (n: number) => String(n).padStart(7);
  const lines = [
    `make-tasks: ${s.questions.train}/${s.questions.val}/${s.questions.test} questions train/val/test; layers ${s.layers.join(',')}; wrote ${s.out}`,
    `${'task'.padEnd(w)}${'train'.padStart(7)}${'val'.padStart(7)}${'test'.padStart(7)}  notes`,
  ];
  for (const n of names) {
    const t = s.tasks.find((x) => x.name === n)!;
    const c = s.examples[n];
    const notes: string[] = [];
    if (t.evalOnly) notes.push('eval only');
    if (t.leaksHead) notes.push("leaks the head's view");
    if (s.withheldFromTrain[n]) notes.push(`${s.withheldFromTrain[n]} kept out of train`);
    for (const [why, k] of Object.entries(s.skipped[n] ?? {})) notes.push(`${k} question${k === 1 ? '' : 's'} skipped: ${why}`);
    lines.push(`${n.padEnd(w)}${num(c.train)}${num(c.val)}${num(c.test)}  ${notes.join('; ')}`);
  }
  lines.push(`${'total'.padEnd(w)}${num(s.totals.train)}${num(s.totals.val)}${num(s.totals.test)}`);
  for (const warning of s.warnings) lines.push(`warning: ${warning}`);
  return lines.join('\n') + '\n';
}

async function makeTasksCommand(opts: MakeTasksCliOptions): Promise<void> {
  if (opts.layers === 'all') throw new InputError('make-tasks: --layers takes layer numbers (e.g. 4,8,12), not "all"');
  const shard = shardOf(opts);
  const out = shardPath(opts.out, shard, 'folder');
  const progress = progressLine(!opts.quiet, (p: MakeTasksProgress) =>
    p.phase === 'extras' ? `make-tasks: extra model runs ${p.done + p.skipped}/${p.total} questions (${p.skipped} done before)` : `make-tasks: ${p.phase} ${p.done}/${p.total} questions`,
  );
  const signal = interruptSignal(() => process.stderr.write('\nmake-tasks: interrupted; finished extra runs are kept (rerun to continue)\n'));
  let s: MakeTasksSummary;
  try {
    s = await makeTasks(
      {
        traces: opts.traces,
        capture: opts.capture,
        out,
        tasks: opts.tasks.split(','),
        layers: opts.layers,
        split: opts.split,
        seed: opts.seed,
        data: opts.data,
        model: opts.model,
        latentHead: opts.latentHead,
        maxPerQuestion: opts.maxPerQuestion,
        headView: opts.headView,
        trainEvalOnly: opts.trainEvalOnly ?? false,
        tamperNoise: opts.tamperNoise,
        cfThreshold: opts.cfThreshold,
        threads: opts.threads,
        overwrite: opts.overwrite ?? false,
        ...(shard ? { shard } : {}),
      },
      { signal, onProgress: progress.update },
    );
  } finally {
    progress.end();
  }
  if (opts.json) process.stdout.write(JSON.stringify(s, null, 1) + '\n');
  else if (!opts.quiet && s.shard)
    process.stderr.write(
      `make-tasks: shard ${s.shard.index}/${s.shard.count}: the extra runs of ${s.shard.questions} questions are in ${out}; ` +
        `merge the shards (lro-native merge -o ${opts.out} ${opts.out}.shard-*-of-${s.shard.count}), then run make-tasks into ${opts.out} without --shard to write the splits\n`,
    );
  else if (!opts.quiet) process.stderr.write(summaryTable(s));
}

interface PipelineCliOptions {
  from?: PipelineStage;
  overwrite?: boolean;
  json?: boolean;
  quiet?: boolean;
}

async function pipelineCommand(configPath: string, opts: PipelineCliOptions): Promise<void> {
  const config = readPipelineConfig(configPath);
  const say = (s: string) => {
    if (!opts.quiet) process.stderr.write(s + '\n');
  };
  let current: PipelineStage = 'trace';
  const progress = progressLine(!opts.quiet, (text: string) => `pipeline: ${current}: ${text}`);
  const signal = interruptSignal(() => process.stderr.write('\npipeline: interrupted; finished work is kept (rerun the same command to continue)\n'));
  const n = PIPELINE_STAGES.length;
  let result;
  try {
    result = await runPipeline(config, {
      from: opts.from,
      overwrite: opts.overwrite ?? false,
      signal,
      onProgress: (stage, text) => {
        current = stage;
        progress.update(text);
      },
      onEvent: (e) => {
        const at = `[${PIPELINE_STAGES.indexOf(e.stage) + 1}/${n}] ${e.stage}`;
        if (e.state === 'skip') say(`pipeline: ${at}: done before, skipped`);
        else if (e.state === 'start') say(`pipeline: ${at}${e.message ? ` (${e.message})` : ''}`);
        else {
          progress.end();
          say(`pipeline: ${at}: ${e.message ?? 'done'}`);
        }
      },
    });
  } catch (e) {
    progress.end();
    if (isAbort(e)) process.stderr.write(`pipeline: stopped in ${current}; rerun the same command to continue\n`);
    throw e;
  }
  if (opts.json) process.stdout.write(JSON.stringify(result.report, null, 1) + '\n');
  else say(`pipeline: report in ${config.out}/report.json and ${config.out}/report.md`);
}

export function registerTaskCommands(program: Command): void {
  const taskList = TASKS.map((t) => `${t.name}${t.evalOnly ? ' (eval only)' : ''}`).join(', ');
  const makeTasksCmd = program
    .command('make-tasks')
    .description('oracle examples (train/val/test JSONL, split by question) from a trace file and the capture of the same runs')
    .requiredOption('--traces <file>', 'trace JSONL (lro-native trace with --early-decode --no-reasoning --ablations zero,skip,noise)')
    .requiredOption('--capture <dir>', 'capture folder of the same questions (lro-native capture, resid_post at the layers)')
    .requiredOption('-o, --out <dir>', 'output folder: train.jsonl, val.jsonl, test.jsonl, summary.json, extra/')
    .option('--tasks <list>', `comma list, or all: ${taskList}`, 'all')
    .addOption(new Option('--layers <list>', 'resid_post layers of the vectors, e.g. 4,8,12 (default 25/50/75% of the depth)').argParser(layersArg))
    .addOption(new Option('--split <fractions>', 'train,val,test fractions of the questions').argParser(splitArg).default([0.8, 0.1, 0.1], '0.8,0.1,0.1'))
    .addOption(new Option('--seed <n>', 'split, wording, tamper and counterfactual choices').argParser(intArg(0)).default(0))
    .option('--data <file.jsonl>', 'the dataset with worked solutions ("answer", GSM8K <<a*b=c>>) for the eval-only tasks')
    .option('-m, --model <path>', 'model for the extra runs and the tokenizer (default: the capture\'s model; "demo": the built-in one)')
    .option('--latent-head <file>', 'latent-head sidecar (default: the capture\'s)')
    .addOption(new Option('--max-per-question <n>', 'at most N examples per task and question (0: all)').argParser(intArg(0)).default(0))
    .option('--no-head-view', "keep tasks that leak the output head's view (logit_lens) out of train.jsonl")
    .option('--train-eval-only', 'also train on the eval-only solution tasks')
    .addOption(new Option('--tamper-noise <s>', 'noise of the tamper reruns, relative to the input norm').argParser(floatArg(0, Infinity, true)).default(1))
    .addOption(new Option('--cf-threshold <x>', 'counterfactual threshold on 1 - cosine, or median (of the training split)').argParser(thresholdArg).default('median'))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--overwrite', 'replace the task files of another run in --out (a rerun with the same inputs continues without it)')
    .option('--json', 'print the summary as JSON on stdout')
    .option('-q, --quiet', 'no progress or table on stderr');
  shardOptions(makeTasksCmd, 'make the extra model runs only (merge the shards, then make-tasks without --shard writes the splits), of').action((opts: MakeTasksCliOptions) => makeTasksCommand(opts));

  program
    .command('pipeline')
    .description('trace -> capture -> make-tasks -> train-oracle -> eval-oracle -> report from one config; finished stages are skipped, interrupted ones resumed')
    .argument('<config.json>', 'pipeline config (see README, examples/pipeline.demo.json)')
    .addOption(new Option('--from <stage>', 'redo this stage and the later ones').choices([...PIPELINE_STAGES]))
    .option('--overwrite', 'redo the stages whose settings or inputs changed (refused without it)')
    .option('--json', 'print the report as JSON on stdout')
    .option('-q, --quiet', 'no progress on stderr')
    .action((path: string, opts: PipelineCliOptions) => pipelineCommand(path, opts));
}
