// `lro-native train-latent`: training a latent reasoner through its latent chain (CODI, Coconut,
// or the LM teacher task), LoRA or full-parameter. The caller wires it in with registerLatentCommands.
import { Command, Option } from 'commander';
import { trainLatent, type TrainLatentProgress, type TrainLatentSummary } from '../../lib/training/latent-train.js';
import { exitIfAborted, type OptimizerCliOptions, duration, floatArg, intArg, interruptSignal, modelPathArg, progressLine, requireFile, threadsArg } from '../cli-util.js';

export function latentProgressText(p: TrainLatentProgress, label = 'train-latent'): string {
  if (p.phase === 'prepare') return `${label}: reading problems`;
  const head = `${label}: step ${p.step}/${p.totalSteps}`;
  if (p.phase === 'save') return `${head} saving`;
  const parts = [head, `loss ${p.loss?.toFixed(4)}`];
  if (p.distill) parts.push(`ce ${p.ce?.toFixed(3)} distill ${p.distill.toFixed(3)} ref ${p.refCe?.toFixed(3)}`);
  if (p.latentCe !== undefined) parts.push(`ce ${p.ce?.toFixed(3)} latent ${p.latentCe.toFixed(3)}`);
  parts.push(`lr ${p.lr?.toExponential(2)}`, `${Math.round(p.tokensPerSec)} tok/s`);
  if (p.etaMs !== null) parts.push(`ETA ${duration(p.etaMs)}`);
  return parts.join('  ');
}

interface TrainLatentCli extends OptimizerCliOptions {
  base: string;
  latentHead?: string;
  initAdapter?: string;
  data: string;
  out: string;
  objective: 'codi' | 'coconut' | 'lm';
  stage: number;
  mode: 'lora' | 'full';
  latentSteps?: number;
  distillFactor: number;
  refFactor: number;
  supervisePrompt?: boolean;
  latentTargets?: boolean;
  operandTargets?: boolean;
  latentFactor: number;
  latentsPerStep: number;
  loraR: number;
  loraAlpha: number;
  seed: number;
  shuffle: boolean;
  limit?: number;
  log?: string;
  resume?: boolean;
  saveEvery: number;
  threads: number;
  dumpGrads?: string;
  json?: boolean;
  quiet?: boolean;
}

function report(s: TrainLatentSummary): void {
  const lines = [
    `trained ${s.steps}/${s.totalSteps} steps${s.resumedFrom !== null ? ` (resumed at step ${s.resumedFrom})` : ''} on ${s.examples} problems; ${s.trainableParams.toLocaleString('en-US')} trainable parameters`,
    `  final batch loss ${s.loss === null ? 'n/a' : s.loss.toFixed(4)}; ${s.tokens.toLocaleString('en-US')} tokens in ${duration(s.elapsedMs)} (${Math.round(s.tokensPerSec)} tok/s while stepping)`,
  ];
  if (s.model) lines.push(`  model: ${s.model}`);
  if (s.adapter) lines.push(`  adapter (llama.cpp GGUF, load with the base): ${s.adapter}`);
  if (s.head) lines.push(`  latent head: ${s.head}`);
  if (s.grads) lines.push(`  step-0 gradients: ${s.grads}`);
  lines.push(`  log: ${s.log}; checkpoint: ${s.checkpoint}`);
  process.stdout.write(lines.join('\n') + '\n');
}

export function registerLatentCommands(program: Command): void {
  program
    .command('train-latent')
    .description('train a latent reasoner through its latent chain: CODI, Coconut or the LM teacher task; LoRA or full-parameter (resumable)')
    .requiredOption('--base <model.gguf>', 'the model: the frozen base (lora) or the model to train (full)')
    .option('--latent-head <file>', 'latent-head sidecar (default <base>.latent.gguf)')
    .option('--init-adapter <adapter.gguf>', 'lora mode: start from this GGUF adapter (convert <codi-dir> --no-merge writes one)')
    .requiredOption('--data <file.jsonl>', 'GSM8K lines (CoT = the <<...>> annotations) or {question, cot, answer} lines')
    .requiredOption('--out <dir>', 'output folder: run.json, checkpoint, log, model.gguf or adapter.gguf, model.latent.gguf')
    .addOption(new Option('--objective <o>', 'training objective').choices(['codi', 'coconut', 'lm']).default('codi'))
    .addOption(new Option('--stage <s>', 'coconut: latent steps replacing the first s CoT steps').argParser(intArg(0, 64)).default(1))
    .addOption(new Option('--mode <m>', 'lora: the LoRA and the head; full: every tensor and the head').choices(['lora', 'full']).default('lora'))
    .addOption(new Option('--latents-per-step <c>', "coconut: latent steps per replaced CoT step (Coconut's c)").argParser(intArg(1, 16)).default(1))
    .option('--latent-targets', "coconut: latent step k's source row also predicts step k's result (the token after the step's last '=')")
    .option('--operand-targets', "with --latent-targets and 2+ latents per step: the latent before each step's last predicts the step's last operand")
    .addOption(new Option('--latent-factor <x>', 'weight of the --latent-targets loss').argParser(floatArg(0, Infinity)).default(1))
    .addOption(new Option('--latent-steps <n>', 'codi: latent steps (default: the head\'s)').argParser(intArg(0, 64)))
    .addOption(new Option('--distill-factor <x>', 'codi: weight of the distillation loss').argParser(floatArg(0, Infinity)).default(1))
    .addOption(new Option('--ref-factor <x>', 'codi: weight of the teacher CE').argParser(floatArg(0, Infinity)).default(1))
    .option('--supervise-prompt', 'also supervise " The answer is:" after the latents')
    .addOption(new Option('--lora-r <n>', 'fresh LoRA rank').argParser(intArg(1, 4096)).default(16))
    .addOption(new Option('--lora-alpha <a>', 'fresh LoRA alpha').argParser(floatArg(0, Infinity, true)).default(32))
    .addOption(new Option('--lr <x>', 'peak learning rate (AdamW)').argParser(floatArg(0, Infinity, true)).default(1e-4))
    .addOption(new Option('--weight-decay <x>', 'decoupled weight decay').argParser(floatArg(0, Infinity)).default(0.01))
    .addOption(new Option('--batch-size <n>', 'problems per micro-batch').argParser(intArg(1, 1 << 20)).default(8))
    .addOption(new Option('--grad-accum <n>', 'micro-batches per optimizer step').argParser(intArg(1, 1 << 20)).default(1))
    .addOption(new Option('--clip <x>', 'gradient-norm clip (0 disables)').argParser(floatArg(0, Infinity)).default(1.0))
    .addOption(new Option('--schedule <s>', 'learning-rate schedule after warmup').choices(['constant', 'linear', 'cosine']).default('constant'))
    .addOption(new Option('--warmup <f>', 'warmup as a fraction of all steps').argParser(floatArg(0, 1)).default(0))
    .addOption(new Option('--epochs <n>', 'passes over the data').argParser(intArg(1, 1 << 20)).default(1))
    .addOption(new Option('--steps <n>', 'optimizer steps (overrides --epochs)').argParser(intArg(1)))
    .addOption(new Option('--seed <n>', 'data order and LoRA init').argParser(intArg(0, 0xffffffff)).default(0))
    .option('--no-shuffle', 'problems in file order')
    .addOption(new Option('--limit <n>', 'the first N problems only').argParser(intArg(1)))
    .option('--log <file>', 'per-step JSONL log (default OUT/log.jsonl)')
    .option('--resume', 'continue the run in --out from its checkpoint (same result as an uninterrupted run)')
    .addOption(new Option('--save-every <n>', 'checkpoint every N steps (0: at the end and on stop only)').argParser(intArg(0)).default(100))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--dump-grads <dir>', 'write DIR/step0.safetensors: every trainable tensor\'s step-0 gradient (PyTorch shapes, HF names)')
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(async (opts: TrainLatentCli) => {
      opts.base = modelPathArg(opts.base, 'base model');
      requireFile(opts.data, 'training data');
      if (opts.latentHead) requireFile(opts.latentHead, 'latent head');
      const progress = progressLine<TrainLatentProgress>(!opts.quiet, (p) => latentProgressText(p));
      const signal = interruptSignal(() => process.stderr.write('\ntrain-latent: stopping after the current step (Ctrl-C again to quit at once)\n'));
      let summary: TrainLatentSummary;
      try {
        const { json: _j, quiet: _q, ...rest } = opts;
        summary = await trainLatent({ ...rest, supervisePrompt: opts.supervisePrompt ?? false, latentTargets: opts.latentTargets ?? false, operandTargets: opts.operandTargets ?? false, resume: opts.resume ?? false }, { onProgress: progress.update, signal });
      } catch (e) {
        progress.end();
        exitIfAborted(e);
        throw e;
      }
      progress.end();
      if (opts.json) process.stdout.write(JSON.stringify(summary, null, 1) + '\n');
      else report(summary);
    });
}
