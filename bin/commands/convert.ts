// `lro-native convert` (Hugging Face folder -> GGUF) and `lro-native convert-adapter`
import type { NativeConvertHfOptions } from '../../lib/core/native.js';
// (PEFT <-> GGUF LoRA). The caller's program wires them in with registerConvertCommands.
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  CONVERT_TYPES,
  convertAdapter,
  convertHf,
  exportHf,
  type ConvertAdapterSummary,
  type ConvertProgress,
  type ConvertSummary,
} from '../../lib/engine/convert.js';

function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number > 0');
  return n;
}

function intArg(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    return n;
  };
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** One updating stderr line on a terminal; nothing otherwise (logs stay clean). */
function progressLine(enabled: boolean): { update: (p: ConvertProgress) => void; end: () => void } {
  const tty = enabled && process.stderr.isTTY;
  let shown = false;
  return {
    update(p) {
      if (!tty) return;
      const item = p.item.length > 48 ? '…' + p.item.slice(-47) : p.item;
      process.stderr.write(`\r\x1b[K${p.stage} ${p.done}/${p.total} ${item}`);
      shown = true;
    },
    end() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

function printWarnings(warnings: string[]): void {
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

function reportHf(s: ConvertSummary): void {
  if (s.vocabOnly) {
    process.stdout.write(
      `wrote ${s.out}: vocabulary only, ${s.nVocab} tokens (tokenizer ${s.tokenizerSize}, pre ${s.pre}), ${formatBytes(s.bytes)}` +
        `${s.configFile ? `, hyper-parameters from ${s.configFile}` : ', no config'}\n`,
    );
    return;
  }
  const lines = [
    `wrote ${s.out}: ${s.tensors} tensors, ${s.params.toLocaleString('en-US')} parameters, ${formatBytes(s.bytes)} (${s.type})`,
    `  from ${s.sourceFiles.join(', ')} (${s.sourceFormat}), config ${s.configFile}`,
    `  vocabulary ${s.nVocab} rows (tokenizer ${s.tokenizerSize}, pre ${s.pre}), ${s.tied ? 'tied output' : 'separate output'}`,
  ];
  if (s.lora.out) lines.push(`  LoRA kept unmerged: ${s.lora.out} (r ${s.lora.rank}, alpha ${s.lora.alpha})`);
  if (s.lora.merged > 0)
    lines.push(`  merged LoRA into ${s.lora.merged} matrices: r ${s.lora.rank}, alpha ${s.lora.alpha} (${s.lora.alphaSource}${s.lora.rslora ? ', rsLoRA' : ''})`);
  if (s.latent && s.latentOut)
    lines.push(
      `  latent head (${s.latent.mode}) -> ${s.latentOut}: bot ${s.latent.botId}, eot ${s.latent.eotId}, pad ${s.latent.padId}, ${s.latent.steps} steps`,
    );
  process.stdout.write(lines.join('\n') + '\n');
}

function reportAdapter(s: ConvertAdapterSummary): void {
  const lines = [
    `wrote ${s.out} (${s.direction}): ${s.pairs} LoRA pairs, r ${s.rank}, alpha ${s.alpha}${s.rslora ? ` (rsLoRA; GGUF alpha ${s.ggufAlpha})` : ''}`,
    `  targets ${s.targets.join(', ')}${s.permuted ? `; ${s.permuted} q/k lora_B tensors ${s.direction === 'peft->gguf' ? 'permuted' : 'un-permuted'} (heads from ${s.baseConfig})` : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** The engine's convert options as commander gives them (--no-merge is `merge: false`). */
interface ConvertCliOptions extends Omit<NativeConvertHfOptions, 'noMerge' | 'onProgress' | 'type' | 'padNames' | 'threads'> {
  out: string;
  type: (typeof CONVERT_TYPES)[number];
  padNames: NonNullable<NativeConvertHfOptions['padNames']>;
  merge: boolean;
  threads: number;
  json?: boolean;
  quiet?: boolean;
}

interface ConvertAdapterCliOptions {
  out: string;
  base?: string;
  type: (typeof CONVERT_TYPES)[number];
  name?: string;
  json?: boolean;
  quiet?: boolean;
}

export function registerConvertCommands(program: Command): void {
  program
    .command('convert')
    .description('convert a Hugging Face Llama folder (safetensors or pytorch_model.bin; CODI checkpoints merged) to GGUF')
    .argument('<hf-dir>', 'model folder: config.json (or base_config.json), tokenizer.json, weights (only tokenizer files with --vocab-only)')
    .requiredOption('-o, --out <model.gguf>', 'output GGUF file')
    .addOption(new Option('--type <type>', 'type of the 2-D weights (norms stay f32)').choices([...CONVERT_TYPES]).default('f32'))
    .addOption(new Option('--latent <mode>', 'latent-head sidecar (default: codi when the checkpoint has prj.*)').choices(['codi', 'coconut', 'none']))
    .addOption(new Option('--lora-alpha <alpha>', 'LoRA alpha for merging (else README.json / adapter_config.json)').argParser(positiveNumber))
    .option('--latent-out <file>', 'sidecar path (default <out>.latent.gguf)')
    .addOption(new Option('--latent-steps <n>', 'default latent steps recorded in the sidecar').argParser(intArg(0, 4096)))
    .option('--weights <file>', 'weights file to read when the folder holds several')
    .option('--tokenizer-dir <dir>', 'folder with tokenizer.json when the model folder has none')
    .option('--name <name>', 'general.name (default from the folder name)')
    .addOption(new Option('--pad-names <mode>', 'names of embedding rows past the tokenizer').choices(['auto', 'codi', 'llama']).default('auto'))
    .option('--pre <name>', 'tokenizer.ggml.pre when the pre-tokenizer is not recognised')
    .option('--vocab-only', 'write only the tokenizer metadata (no tensors; tokenizer.json + tokenizer_config.json suffice)')
    .option('--no-merge', 'keep a LoRA checkpoint unmerged: the base as is, the LoRA as a GGUF adapter (for train-latent --init-adapter)')
    .option('--lora-out <file>', 'with --no-merge: the adapter path (default <out minus .gguf>.lora.gguf)')
    .addOption(new Option('--threads <n>', 'LoRA merge threads (0: all cores)').argParser(intArg(0, 1024)).default(0))
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(async (dir: string, opts: ConvertCliOptions) => {
      const progress = progressLine(!opts.quiet && !opts.json);
      let summary: ConvertSummary;
      try {
        summary = await convertHf(dir, opts.out, {
          type: opts.type,
          latent: opts.latent,
          loraAlpha: opts.loraAlpha,
          latentOut: opts.latentOut,
          latentSteps: opts.latentSteps,
          weights: opts.weights,
          tokenizerDir: opts.tokenizerDir,
          name: opts.name,
          padNames: opts.padNames,
          pre: opts.pre,
          vocabOnly: opts.vocabOnly,
          noMerge: !opts.merge,
          loraOut: opts.loraOut,
          threads: opts.threads,
          onProgress: progress.update,
        });
      } finally {
        progress.end();
      }
      printWarnings(summary.warnings);
      if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else reportHf(summary);
    });

  program
    .command('convert-adapter')
    .description('convert a LoRA adapter between PEFT (folder) and llama.cpp GGUF; the direction follows the input')
    .argument('<input>', 'PEFT folder (adapter_config.json + adapter_model.safetensors) or a .gguf adapter')
    .requiredOption('-o, --out <path>', 'a .gguf file (from PEFT) or a folder (from GGUF)')
    .option('--base <path>', "base model config.json, folder or GGUF (head counts for the Q/K permutation; default: the adapter's base_model_name_or_path beside it)")
    .addOption(new Option('--type <type>', 'tensor type when writing GGUF').choices([...CONVERT_TYPES]).default('f32'))
    .option('--name <name>', 'general.name of a written GGUF')
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(async (input: string, opts: ConvertAdapterCliOptions) => {
      const progress = progressLine(!opts.quiet && !opts.json);
      let summary: ConvertAdapterSummary;
      try {
        summary = await convertAdapter(input, opts.out, { baseConfig: opts.base, type: opts.type, name: opts.name, onProgress: progress.update });
      } finally {
        progress.end();
      }
      printWarnings(summary.warnings);
      if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else reportAdapter(summary);
    });

  program
    .command('export-hf')
    .description('write a GGUF Llama as a Hugging Face folder: config.json, model.safetensors (f32, HF q/k order), tokenizer.json; a latent model adds prj.* and README.json')
    .argument('<model.gguf>', 'the model (its <model>.latent.gguf beside it is exported too)')
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('--latent-head <file>', 'latent-head sidecar (default <model>.latent.gguf)')
    .option('--overwrite', 'write into a non-empty --out')
    .option('--json', 'print the summary as JSON')
    .action((model: string, opts: { out: string; latentHead?: string; overwrite?: boolean; json?: boolean }) => {
      const s = exportHf(model, opts.out, { latentHead: opts.latentHead, overwrite: opts.overwrite });
      if (opts.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      else
        process.stdout.write(
          `wrote ${s.dir}: ${s.files.join(', ')} (${s.tensors} tensors${s.latentMode ? `, latent head ${s.latentMode} as prj.*` : ''})\n` +
            `  load it with transformers: AutoModelForCausalLM.from_pretrained("${s.dir}"); back to GGUF: lro-native convert ${s.dir} --out model.gguf\n`,
        );
    });
}
