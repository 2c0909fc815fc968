// `lro-native organism data` (synthetic word problems with known intermediate values, GSM8K
// JSONL) and `lro-native organism tokenizer` (a small byte-level BPE trained on them, as a
// vocab-only GGUF). The caller's program wires them in with registerOrganismCommands.
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync } from 'node:fs';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { InputError } from '../../lib/errors.js';
import { readPromptJsonl } from '../../lib/jsonl.js';
import { generateProblems, MAX_STEPS, organismCorpus, TEMPLATE_SETS, type TemplateSet } from '../../lib/organism/data.js';
import { trainOrganismTokenizer, writeTokenizerGguf } from '../../lib/organism/tokenizer.js';
import { intArg, requireFile } from '../cli-util.js';

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
  const tok = trainOrganismTokenizer(organismCorpus(records), { vocabSize: opts.vocabSize });
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
    .requiredOption('-o, --out <file.gguf>', 'output GGUF')
    .option('--overwrite', 'replace --out when it exists')
    .option('-q, --quiet', 'no summary on stderr')
    .action((opts: TokenizerCliOptions) => tokenizerCommand(opts));
}
