// `lro-native organism data` (synthetic word problems with known intermediate values, GSM8K
// JSONL) and `lro-native organism tokenizer` (a small byte-level BPE trained on them, as a
// vocab-only GGUF). The caller's program wires them in with registerOrganismCommands.
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync } from 'node:fs';
import { writeFileAtomic } from '../../lib/core/atomic-file.js';
import { InputError } from '../../lib/core/errors.js';
import { readPromptJsonl } from '../../lib/capture/jsonl.js';
import { generateProblems, MAX_STEPS, organismCorpus, TEMPLATE_SETS, type TemplateSet } from '../../lib/organism/data.js';
import { trainOrganismTokenizer, writeTokenizerGguf } from '../../lib/organism/tokenizer.js';
import { evaluateOrganism, type OrganismEvalReport } from '../../lib/organism/evaluate.js';
import { trainOrganism } from '../../lib/organism/recipe.js';
import { exitIfAborted, floatArg, intArg, interruptSignal, modelPathArg, progressLine, requireFile, threadsArg } from '../cli-util.js';
import { latentProgressText } from './latent.js';

/** "3" or "2-4", within 1..MAX_STEPS. */
export function stepsArg(value: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(value);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi > MAX_STEPS || lo > hi)
    throw new InvalidArgumentError(`expected a step count or range within 1..${MAX_STEPS}, e.g. 3 or 2-4; got "${value}"`);
  return [lo, hi];
}

function refuseExisting(path: string, command: string): void {
  if (existsSync(path)) throw new InputError(`organism ${command}: ${path} already exists; pass --overwrite to replace it, or choose another --out`);
}

interface DataCliOptions {
  seed: number;
  n: number;
  steps: [number, number];
  templates: TemplateSet;
  distractors: boolean;
  out: string;
  overwrite?: boolean;
  quiet?: boolean;
}

async function dataCommand(opts: DataCliOptions): Promise<void> {
  if (!opts.overwrite) refuseExisting(opts.out, 'data');
  const problems = generateProblems({
    seed: opts.seed,
    n: opts.n,
    minSteps: opts.steps[0],
    maxSteps: opts.steps[1],
    distractors: opts.distractors,
    templates: opts.templates,
  });
  await writeFileAtomic(opts.out, problems.map((p) => JSON.stringify(p) + '\n').join(''));
  if (!opts.quiet) {
    const steps = opts.steps[0] === opts.steps[1] ? `${opts.steps[0]}` : `${opts.steps[0]}-${opts.steps[1]}`;
    process.stderr.write(
      `organism data: wrote ${problems.length} problems (seed ${opts.seed}, ${steps} steps, templates ${opts.templates}, distractors ${opts.distractors ? 'on' : 'off'}) to ${opts.out}\n`,
    );
  }
}

interface TokenizerCliOptions {
  data: string[];
  vocabSize: number;
  numberTokens: number;
  out: string;
  overwrite?: boolean;
  quiet?: boolean;
}

async function tokenizerCommand(opts: TokenizerCliOptions): Promise<void> {
  if (!opts.overwrite) refuseExisting(opts.out, 'tokenizer');
  const records: { question: string; answer: string }[] = [];
  for (const file of opts.data) {
    requireFile(file, 'data file');
    for await (const r of readPromptJsonl(file, { fields: ['question'] })) {
      if (r.answer === undefined) throw new InputError(`${file}: record ${r.id} has no string "answer" (expected lro-native organism data output)`);
      records.push({ question: r.text!, answer: r.answer });
    }
  }
  if (records.length === 0) throw new InputError('organism tokenizer: the data files hold no records');
  const tok = trainOrganismTokenizer(organismCorpus(records), { vocabSize: opts.vocabSize, numberTokens: opts.numberTokens });
  writeTokenizerGguf(opts.out, tok);
  if (!opts.quiet)
    process.stderr.write(
      `organism tokenizer: ${tok.tokens.length} tokens (${tok.merges.length} merges) from ${records.length} problems; bos ${tok.specialIds.bos}, eos ${tok.specialIds.eos}, ` +
        `<|bot|> ${tok.specialIds.bot}, <|eot_latent|> ${tok.specialIds.eotLatent}; wrote ${opts.out}\n`,
    );
}

function listArg(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').map((s) => s.trim()).filter(Boolean)];
}

export function registerOrganismCommands(program: Command): void {
  const organism = program.command('organism').description('synthetic word problems with known intermediate values, and a tokenizer for them');

  organism
    .command('data')
    .description('write N word problems (GSM8K JSONL with <<a+b=c>> annotations, plus the program) for a seed')
    .addOption(new Option('--seed <n>', 'problems are deterministic for the seed').argParser(intArg(0)).default(0))
    .addOption(new Option('-n, --n <count>', 'number of problems').argParser(intArg(1, 10_000_000)).makeOptionMandatory())
    .addOption(new Option('--steps <range>', `operations per problem: a count or a range within 1..${MAX_STEPS}`).argParser(stepsArg).default([2, 4], '2-4'))
    .addOption(new Option('--templates <set>', 'phrasings: train, heldout (at least one held-out phrasing per problem) or all').choices([...TEMPLATE_SETS]).default('all'))
    .option('--no-distractors', 'no unrelated sentences between the steps')
    .requiredOption('-o, --out <file.jsonl>', 'output JSONL')
    .option('--overwrite', 'replace --out when it exists')
    .option('-q, --quiet', 'no summary on stderr')
    .action((opts: DataCliOptions) => dataCommand(opts));

  organism
    .command('tokenizer')
    .description('train the byte-level BPE on organism problems (questions and teacher texts) and write it as a vocab-only GGUF')
    .requiredOption('--data <files>', 'organism data JSONL (comma list, or repeat the flag)', listArg)
    .addOption(new Option('--vocab-size <n>', 'tokens in all: 256 bytes + merges + 6 special tokens').argParser(intArg(262, 1 << 20)).default(384))
    .addOption(new Option('--number-tokens <n>', 'numbers 0..N one token each (0: every digit its own token; the organism uses 99)').argParser(intArg(0, 99)).default(0))
    .requiredOption('-o, --out <file.gguf>', 'output GGUF')
    .option('--overwrite', 'replace --out when it exists')
    .option('-q, --quiet', 'no summary on stderr')
    .action((opts: TokenizerCliOptions) => tokenizerCommand(opts));

  organism
    .command('train')
    .description('train the model organism: data, tokenizer, seeded init, LM pretraining of the teacher task, CODI distillation (resumable)')
    .requiredOption('-o, --out <dir>', 'run folder; the result is DIR/organism.gguf + DIR/organism.latent.gguf')
    .option('--quick', 'a minute-long tiny preset (for tests: the loss falls and the outputs load)')
    .option('--resume', 'continue the run in --out')
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('-q, --quiet', 'no progress output')
    .action(async (opts: { out: string; quick?: boolean; resume?: boolean; threads: number; quiet?: boolean }) => {
      let stage = '';
      const progress = progressLine<{ stage: string; text: string }>(!opts.quiet, (p) => p.text);
      const signal = interruptSignal(() => process.stderr.write('\norganism train: stopping after the current step (rerun with --resume)\n'));
      try {
        const r = await trainOrganism({
          out: opts.out,
          quick: opts.quick,
          resume: opts.resume,
          threads: opts.threads,
          signal,
          onProgress: (s, p) => {
            if (s !== stage && !opts.quiet) process.stderr.write(`${stage ? '\n' : ''}organism train: ${s}\n`);
            stage = s;
            if (p) progress.update({ stage: s, text: latentProgressText(p, s) });
          },
        });
        progress.end();
        process.stdout.write(`organism: ${r.model}\nlatent head: ${r.head}\n(${Math.round(r.elapsedMs / 1000)} s in this run)\n`);
      } catch (e) {
        progress.end();
        exitIfAborted(e);
        throw e;
      }
    });

  organism
    .command('eval')
    .description('accuracy on fresh problems with and without latent steps, with each latent step zeroed, and linear probes of every step\'s result')
    .option('--model <m.gguf>', 'the organism (its <m>.latent.gguf beside it); default the built-in one')
    .option('--latent-head <file>', 'latent-head sidecar')
    .addOption(new Option('-n, --n <count>', 'test problems').argParser(intArg(1, 1_000_000)).default(200))
    .addOption(new Option('--seed <n>', 'test problems\' seed (problems seen in training are dropped)').argParser(intArg(0)).default(1001))
    .addOption(new Option('--steps <range>', 'operations per problem').argParser(stepsArg).default([3, 3], '3'))
    .addOption(new Option('--templates <set>', 'phrasings of the test problems: train (the ones it learned), heldout or all').choices([...TEMPLATE_SETS]).default('train'))
    .addOption(new Option('--heldout-phrasings <n>', 'also score N problems with a held-out phrasing, with latents (default: -n when --templates train; 0: none)').argParser(intArg(0, 1_000_000)))
    .addOption(new Option('--probe-train <n>', 'problems to fit the probes on (0: no probes)').argParser(intArg(0, 1_000_000)).default(2000))
    .addOption(new Option('--probe-lambda <x>', 'ridge penalty').argParser(floatArg(0, Infinity, true)).default(1e-2))
    .addOption(new Option('--invert <n>', 'invert every latent step of the first N test problems (lro-native invert, last layer): how often the texts name the step\'s result').argParser(intArg(0, 1_000_000)).default(0))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--json', 'print the report as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(async (opts: { model?: string; latentHead?: string; n: number; seed: number; steps: [number, number]; templates: TemplateSet; heldoutPhrasings?: number; probeTrain: number; probeLambda: number; invert: number; threads: number; json?: boolean; quiet?: boolean }) => {
      opts.model = modelPathArg(opts.model, 'model file');
      const progress = progressLine<string>(!opts.quiet, (t) => t);
      const r = await evaluateOrganism({ ...opts, model: opts.model, onProgress: (s, d, t) => progress.update(`organism eval: ${s} ${d}/${t}`) });
      progress.end();
      if (opts.json) process.stdout.write(JSON.stringify(r, null, 1) + '\n');
      else process.stdout.write(organismReportText(r));
    });
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function organismReportText(r: OrganismEvalReport): string {
  const s = r.settings;
  const lines = [
    `${r.model}: ${s.n} fresh ${s.steps[0] === s.steps[1] ? s.steps[0] : s.steps.join('-')}-step problems (seed ${s.seed}, ${s.templates} phrasings, ${s.droppedAsInTrain} seen in training dropped), ${s.latentSteps} latent steps`,
    `  with latents     ${pct(r.withLatents.accuracy)} (${r.withLatents.correct}/${r.withLatents.n})`,
    `  without latents  ${pct(r.withoutLatents.accuracy)} (no bot, no latent steps)`,
    ...(r.heldoutPhrasings ? [`  held-out phrasings, with latents  ${pct(r.heldoutPhrasings.accuracy)} (${r.heldoutPhrasings.correct}/${r.heldoutPhrasings.n}; a phrasing never trained on in some step)`] : []),
    `  latent step zeroed: ${r.zeroAblation.map((a, k) => `${k}: ${pct(a.accuracy)}`).join('  ')}`,
  ];
  if (r.probe) {
    const p = r.probe;
    lines.push(`  linear probe of step j's result (ridge, fitted on ${p.trainProblems} problems, scored on ${p.testProblems}); best latent position per layer:`);
    lines.push(`    ${'step'.padEnd(6)}${p.points.map((x) => x.padStart(14)).join('')}${'majority'.padStart(10)}`);
    p.best.forEach((row, j) => lines.push(`    ${String(j + 1).padEnd(6)}${row.map((x) => pct(x).padStart(14)).join('')}${pct(p.majority[j]).padStart(10)}`));
  }
  if (r.inversion) {
    const v = r.inversion;
    lines.push(`  latent inversion (${v.problems} problems, ${v.point}, beam 8, 6 tokens): the texts after the question closest to each latent step`);
    lines.push(`    ${'latent'.padEnd(8)}${'for step'.padStart(9)}${'own result top-1'.padStart(18)}${'top-8'.padStart(8)}${'final answer top-1'.padStart(20)}`);
    v.perLatent.forEach((x, k) =>
      lines.push(
        `    ${String(k).padEnd(8)}${(x.programStep === null ? '-' : String(x.programStep + 1)).padStart(9)}${(x.programStep === null ? '-' : pct(x.ownResultTop1.accuracy)).padStart(18)}${(x.programStep === null ? '-' : pct(x.ownResultTop8.accuracy)).padStart(8)}${pct(x.finalAnswerTop1.accuracy).padStart(20)}`,
      ),
    );
  }
  return lines.join('\n') + '\n';
}
