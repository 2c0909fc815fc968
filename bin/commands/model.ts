// `lro-native info`, `tokenize`, `generate` and `capture`: the model-level commands. The caller's
// program wires them in with registerModelCommands.
import { Command, Option } from 'commander';
import { countShardRecords, shardOf, shardOptions, type ShardCliOptions, floatArg, intArg, interruptSignal, isAbort, layersArg, openModel, openModelOrDemo, pointsArg, positionsArg, type PositionSelector, progressLine, requireFile, threadsArg, tokenListArg } from '../cli-util.js';
import { LAYER_POINTS, MODEL_POINTS, REASONING_POINTS } from '../../lib/core/hook-points.js';
import { capture, expandCapturePoints, type CaptureProgress, type CaptureRecord } from '../../lib/capture/capture.js';
import { InputError } from '../../lib/core/errors.js';
import { fileSource, textSource, type SourceIdentity } from '../../lib/core/content-hash.js';
import { countJsonlRecords, readPromptJsonl } from '../../lib/capture/jsonl.js';
import { findLatentHead, requireLatentHead } from '../../lib/reasoning/reason.js';
import { shardPath } from '../../lib/core/shard.js';
import type { LatentHead } from '../../lib/reasoning/latent-head.js';
import { loadModel, type Model } from '../../lib/engine/model.js';
import { native, type GgufInspection, type GgufMetadataValue } from '../../lib/core/native.js';

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** GGUF stores most floats as f32; print the shortest decimal that reads back as the same f32. */
function shortFloat(x: number): string {
  if (Number.isInteger(x) || !Number.isFinite(x) || Math.fround(x) !== x) return String(x);
  for (let p = 1; p <= 9; p++) {
    const s = x.toPrecision(p);
    if (Math.fround(Number(s)) === x) return String(Number(s));
  }
  return String(x);
}

function formatMetadataValue(v: GgufMetadataValue): string {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return shortFloat(v);
  if (v && typeof v === 'object' && !Array.isArray(v) && 'arrayOf' in v) return `[${v.arrayOf} × ${v.length}]`;
  const s = JSON.stringify(v, jsonReplacer);
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}

// ------------------------------------------------------------------ commands

interface InfoOptions {
  json?: boolean;
  maxArray: number;
}

async function infoCommand(path: string, opts: InfoOptions): Promise<void> {
  requireFile(path, 'model file');
  let model: Model;
  let weightsError: string | undefined;
  try {
    model = await loadModel(path);
  } catch (e) {
    // Still describe files whose weights this engine cannot run (other architectures, types).
    try {
      model = await loadModel(path, { vocabOnly: true });
    } catch {
      // Not a model at all (a LoRA adapter, a latent-head sidecar): describe the file itself.
      let inspection;
      try {
        inspection = native().inspectGguf(path, opts.maxArray);
      } catch {
        throw e;
      }
      printInspection(inspection, opts);
      return;
    }
    weightsError = (e as Error).message;
  }
  try {
    const info = model.info;
    const metadata = model.metadata(opts.maxArray);
    const typeCounts: Record<string, number> = {};
    let parameters = 0;
    for (const t of info.tensors) {
      typeCounts[t.type] = (typeCounts[t.type] ?? 0) + 1;
      parameters += t.shape.reduce((a, b) => a * b, 1);
    }
    const { tensors, ...rest } = info;
    if (opts.json) {
      const out = { ...rest, parameters, tensorTypes: typeCounts, ...(weightsError ? { weightsError } : {}), tensors, metadata };
      process.stdout.write(JSON.stringify(out, jsonReplacer, 2) + '\n');
      return;
    }
    const rows: [string, string][] = [
      ['file', `${info.path} (${formatBytes(info.fileSize)}, GGUF v${info.ggufVersion})`],
      ['name', info.name || '(none)'],
      ['architecture', info.architecture || '(none)'],
    ];
    if (info.vocabOnly) {
      rows.push(['weights', weightsError ? `not loadable: ${weightsError}` : 'none (vocab-only file)']);
    } else {
      rows.push(
        ['vocab', String(info.nVocab)],
        ['embedding', String(info.nEmbd)],
        ['layers', String(info.nLayer)],
        ['heads', `${info.nHead} (kv ${info.nHeadKv}, head dim ${info.headDim})`],
        ['feed-forward', String(info.nFf)],
        ['rope', `base ${shortFloat(info.ropeFreqBase)}, ${info.nRot} dims${info.hasRopeFreqs ? ', rope_freqs.weight (llama3 scaling)' : ''}`],
        ['context', `${info.nCtxTrain} (training)`],
        ['rms eps', shortFloat(info.rmsEps)],
        ['output', info.tiedOutput ? 'tied to token_embd.weight' : 'output.weight'],
      );
    }
    const types = Object.entries(typeCounts)
      .sort((a, b) => b[1] - a[1])
      .map(([t, n]) => `${t} ${n}`)
      .join(', ');
    rows.push(['tensors', info.tensors.length ? `${info.tensors.length} (${parameters.toLocaleString('en-US')} parameters): ${types}` : '0']);
    const tk = info.tokenizer;
    rows.push([
      'tokenizer',
      `${tk.model}${tk.pre ? ` (pre ${tk.pre})` : ''}, ${tk.nTokens} tokens; bos ${tk.bos}, eos ${tk.eos}, eot ${tk.eot}; ` +
        `add bos ${tk.addBos ? 'yes' : 'no'}, add eos ${tk.addEos ? 'yes' : 'no'}`,
    ]);
    const w = Math.max(...rows.map((r) => r[0].length)) + 2;
    let out = rows.map(([k, v]) => k.padEnd(w) + v).join('\n') + '\n';
    const keys = Object.keys(metadata).sort();
    out += `metadata (${keys.length} keys)\n`;
    for (const k of keys) out += `  ${k} = ${formatMetadataValue(metadata[k])}\n`;
    process.stdout.write(out);
  } finally {
    model.dispose();
  }
}

function printInspection(f: GgufInspection, opts: InfoOptions): void {
  if (opts.json) {
    process.stdout.write(JSON.stringify(f, jsonReplacer, 2) + '\n');
    return;
  }
  const kind = String(f.metadata['general.type'] ?? 'no tokenizer, not a model');
  let out = `file      ${f.path} (${formatBytes(f.fileSize)}, GGUF v${f.ggufVersion})\nkind      ${kind}\n`;
  out += `tensors   ${f.tensors.length}\n`;
  for (const t of f.tensors.slice(0, 64)) out += `  ${t.name} ${t.type} [${t.shape.join(', ')}]\n`;
  if (f.tensors.length > 64) out += `  ... ${f.tensors.length - 64} more\n`;
  const keys = Object.keys(f.metadata).sort();
  out += `metadata (${keys.length} keys)\n`;
  for (const k of keys) out += `  ${k} = ${formatMetadataValue(f.metadata[k])}\n`;
  process.stdout.write(out);
}

interface TokenizeCliOptions {
  model: string;
  bos: boolean;
  parseSpecial?: boolean;
}

async function tokenizeCommand(text: string, opts: TokenizeCliOptions): Promise<void> {
  const model = await openModel(opts.model, true);
  try {
    const ids = model.tokenize(text, { addBos: opts.bos, parseSpecial: opts.parseSpecial ?? false });
    process.stdout.write(JSON.stringify(ids) + '\n');
  } finally {
    model.dispose();
  }
}

interface GenerateCliOptions {
  model: string;
  prompt: string;
  nPredict: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  threads: number;
  bos: boolean;
  parseSpecial?: boolean;
  ignoreEos?: boolean;
}

async function generateCommand(opts: GenerateCliOptions): Promise<void> {
  const model = await openModel(opts.model);
  const signal = interruptSignal(() => undefined);
  const tokens: number[] = [];
  let shown = 0;
  // Decode the whole continuation each time and print the new part, holding back a trailing
  // U+FFFD: a multi-byte character may be split across tokens.
  const show = (final: boolean) => {
    const text = model.detokenize(tokens);
    let end = text.length;
    if (!final) while (end > shown && text.charCodeAt(end - 1) === 0xfffd) end--;
    if (end > shown) process.stdout.write(text.slice(shown, end));
    shown = Math.max(shown, end);
  };
  try {
    await model.generate(opts.prompt, {
      maxTokens: opts.nPredict,
      temperature: opts.temperature,
      topK: opts.topK,
      topP: opts.topP,
      seed: opts.seed,
      addBos: opts.bos,
      parseSpecial: opts.parseSpecial ?? false,
      stopAtEog: !opts.ignoreEos,
      session: { threads: opts.threads },
      signal,
      onToken: (id) => {
        tokens.push(id);
        show(false);
      },
    });
  } finally {
    show(true);
    process.stdout.write('\n');
    model.dispose();
  }
}

interface CaptureCliOptions extends ShardCliOptions {
  model?: string;
  latentHead?: string;
  plain?: boolean;
  prompt?: string;
  tokens?: number[];
  data?: string;
  field?: string;
  points: string[];
  layers: 'all' | number[];
  positions?: PositionSelector[];
  latentSteps?: number;
  maxAnswerTokens: number;
  out: string;
  dtype: 'f32' | 'f16' | 'bf16';
  limit?: number;
  shardMb: number;
  flushSecs: number;
  batchSize: number;
  threads: number;
  resume?: boolean;
  bos: boolean;
  parseSpecial?: boolean;
  quiet?: boolean;
}

function captureProgressText(p: CaptureProgress): string {
  const secs = p.elapsedMs / 1000;
  const rate = secs > 0 ? p.captured / secs : 0;
  const of = p.total !== undefined ? `/${p.total}` : '';
  const left = p.total !== undefined ? p.total - p.captured - p.skipped : 0;
  const eta = rate > 0 && left > 0 ? `, ~${Math.ceil(left / rate)}s left` : '';
  const skipped = p.skipped ? ` (${p.skipped} skipped)` : '';
  return `capture: ${p.captured + p.skipped}${of} records${skipped}, ${p.tokens} tokens, ${rate.toFixed(1)} records/s, ${p.shards} shards written${eta}`;
}

async function captureCommand(opts: CaptureCliOptions): Promise<void> {
  const sources = [opts.prompt !== undefined, opts.tokens !== undefined, opts.data !== undefined].filter(Boolean).length;
  if (sources !== 1) throw new InputError('capture: give exactly one of --prompt, --tokens or --data');
  if (opts.data !== undefined) requireFile(opts.data, 'data file');
  const shard = shardOf(opts);
  if (shard && opts.data === undefined) throw new InputError('capture: --shard splits a --data file; --prompt and --tokens are not sharded');
  opts = { ...opts, out: shardPath(opts.out, shard, 'folder') };
  if (opts.plain && opts.latentHead !== undefined) throw new InputError('capture: --plain and --latent-head contradict each other (--plain runs no latent loop)');
  const opened = await openModelOrDemo(opts.model, opts.latentHead, opts.quiet ?? false);
  const model = opened.model;
  try {
    // With a latent head the capture runs the reasoning loop; --plain feeds the tokens as they are.
    let head: LatentHead | null = null;
    if (!opts.plain) head = opened.latentHead !== undefined ? requireLatentHead(model, opened.latentHead) : findLatentHead(model);
    const points = expandCapturePoints(opts.points, opts.layers, model.info.nLayer, head !== null);
    let records: Iterable<CaptureRecord> | AsyncIterable<CaptureRecord>;
    let total: number | undefined;
    let source: SourceIdentity;
    if (opts.data !== undefined) {
      const fields = opts.field ? [opts.field] : undefined;
      total = shard ? await countShardRecords(opts.data, shard, fields, opts.limit) : await countJsonlRecords(opts.data, opts.limit);
      if (shard && !opts.quiet) process.stderr.write(`capture: shard ${shard.index}/${shard.count} (${total} of the records) into ${opts.out}\n`);
      records = readPromptJsonl(opts.data, { fields, limit: opts.limit });
      source = await fileSource(opts.data, opts.field ? `field ${opts.field}` : undefined);
    } else if (opts.prompt !== undefined) {
      records = [{ id: 'prompt', text: opts.prompt }];
      source = textSource('--prompt', opts.prompt);
    } else {
      records = [{ id: 'tokens', tokens: opts.tokens! }];
      source = textSource('--tokens', JSON.stringify(opts.tokens));
    }
    const progress = progressLine(opts.data !== undefined && !opts.quiet, captureProgressText);
    const signal = interruptSignal(() => process.stderr.write('\ncapture: interrupted; writing the records already captured (Ctrl-C again to quit now)\n'));
    const started = Date.now();
    let result;
    try {
      result = await capture(model, records, {
        out: opts.out,
        points,
        dtype: opts.dtype,
        shardBytes: Math.max(1, Math.round(opts.shardMb * 1024 * 1024)),
        flushIntervalMs: Math.round(opts.flushSecs * 1000),
        resume: opts.resume ?? false,
        source,
        addBos: opts.bos,
        parseSpecial: opts.parseSpecial ?? false,
        batchSize: opts.batchSize,
        threads: opts.threads,
        total,
        positions: opts.positions,
        mode: head ? 'reasoning' : 'plain',
        latentHead: head ?? undefined,
        latentSteps: opts.latentSteps,
        maxAnswerTokens: opts.maxAnswerTokens,
        ...(shard ? { shard } : {}),
        signal,
        onProgress: progress.update,
      });
    } catch (e) {
      progress.end();
      if (isAbort(e)) {
        process.stderr.write(`capture: stopped; the records listed in ${opts.out}/manifest.json are kept; rerun with --resume to continue\n`);
      }
      throw e;
    }
    progress.end();
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const skipped = result.skipped ? `; ${result.skipped} already captured (skipped)` : '';
    const how = head ? ` (reasoning loop, ${result.manifest.settings.reasoning!.latentSteps} latent steps)` : '';
    process.stderr.write(
      `capture: ${result.captured} records (${result.tokens} tokens) written to ${opts.out} in ${secs}s${how}; ` +
        `${result.manifest.records.length} records in ${result.manifest.shards.length} shard${result.manifest.shards.length === 1 ? '' : 's'}${skipped}\n`,
    );
  } finally {
    model.dispose();
  }
}

export function registerModelCommands(program: Command): void {
  program
    .command('info')
    .description('describe a GGUF file: architecture, sizes, tensor types, tokenizer, metadata')
    .argument('<model>', 'GGUF file (a vocab-only file works too)')
    .option('--json', 'print JSON')
    .addOption(new Option('--max-array <n>', 'metadata arrays longer than this are summarised').argParser(intArg(0)).default(16))
    .action((path: string, opts: InfoOptions) => infoCommand(path, opts));

  program
    .command('tokenize')
    .description('print the token ids of TEXT as a JSON array')
    .requiredOption('-m, --model <path>', 'GGUF file (vocab-only files work)')
    .option('--no-bos', 'do not prepend BOS')
    .option('--parse-special', 'text spelling a special token (e.g. <|eot_id|>) becomes that token')
    .argument('<text>', 'text to tokenize')
    .action((text: string, opts: TokenizeCliOptions) => tokenizeCommand(text, opts));

  program
    .command('generate')
    .description('continue a prompt, streaming the text to stdout')
    .requiredOption('-m, --model <path>', 'GGUF model')
    .requiredOption('-p, --prompt <text>', 'prompt text')
    .addOption(new Option('-n, --n-predict <count>', 'tokens to generate').argParser(intArg(0, (1 << 20) - 4096)).default(32))
    .addOption(new Option('--temperature <t>', '0: greedy').argParser(floatArg(0, Infinity)).default(0))
    .addOption(new Option('--top-k <k>', '0: no limit').argParser(intArg(0)).default(0))
    .addOption(new Option('--top-p <p>', '1: no limit').argParser(floatArg(0, 1, true)).default(1))
    .addOption(new Option('--seed <n>', 'sampling seed').argParser(intArg(0)).default(0))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--no-bos', 'do not prepend BOS')
    .option('--parse-special', 'parse special-token text in the prompt')
    .option('--ignore-eos', 'do not stop at end-of-generation tokens')
    .action((opts: GenerateCliOptions) => generateCommand(opts));

  const captureCmd = program
    .command('capture')
    .description('write hook-point activations to safetensors shards + manifest.json (through the latent loop when the model has a latent head)')
    .option('-m, --model <path>', 'GGUF model, or "demo" / "organism": the built-in model organism (the default)')
    .option('--latent-head <file>', 'latent-head sidecar (default: <model>.latent.gguf beside the model, or one inside it)')
    .option('--plain', 'feed the text as it is, without the latent loop, even when the model has a latent head')
    .option('-p, --prompt <text>', 'one prompt (record id "prompt")')
    .addOption(new Option('--tokens <ids>', 'token ids, e.g. 1997,32,613 (record id "tokens"; with a latent head: the prompt ids)').argParser(tokenListArg))
    .option('--data <file.jsonl>', 'JSONL, one record a line, text in "question" or "prompt" (GSM8K works as is)')
    .option('--field <name>', 'JSONL field holding the text (instead of question/prompt)')
    .addOption(
      new Option('--points <list>', `${[...MODEL_POINTS, ...REASONING_POINTS, ...LAYER_POINTS].join(', ')} (NAME.L for one layer)`)
        .argParser(pointsArg)
        .default(['logits', 'final_norm', 'resid_post'], 'logits,final_norm,resid_post'),
    )
    .addOption(new Option('--layers <list>', 'layers of the layer points: all, or e.g. 0,2,3 or 0-3').argParser(layersArg).default('all'))
    .addOption(new Option('--positions <list>', 'positions to keep: all, kinds (prompt,bot,latent,eot,answer) and/or indices, e.g. latent or 0-9').argParser(positionsArg))
    .addOption(new Option('--latent-steps <n>', "latent steps (default: the head's)").argParser(intArg(0, 4096)))
    .addOption(new Option('--max-answer-tokens <n>', 'answer tokens decoded after the latent steps').argParser(intArg(0)).default(32))
    .requiredOption('-o, --out <dir>', 'output folder')
    .addOption(new Option('--dtype <type>', 'stored dtype').choices(['f32', 'f16', 'bf16']).default('f32'))
    .addOption(new Option('--limit <n>', 'only the first N records').argParser(intArg(1)))
    .addOption(new Option('--shard-mb <mb>', 'bound on one shard (and on buffered data)').argParser(floatArg(0, Infinity, true)).default(256))
    .addOption(new Option('--flush-secs <s>', 'also write a shard when its data is this old (0: only when full)').argParser(floatArg(0, Infinity)).default(60))
    .addOption(new Option('--batch-size <n>', 'positions per forward pass').argParser(intArg(1, 65536)).default(512))
    .addOption(new Option('--threads <n>', '0: physical cores').argParser(threadsArg).default(0))
    .option('--resume', 'continue an interrupted capture in --out, skipping records its manifest lists')
    .option('--no-bos', 'do not prepend BOS')
    .option('--parse-special', 'parse special-token text')
    .option('-q, --quiet', 'no progress output');
  shardOptions(captureCmd).action((opts: CaptureCliOptions) => captureCommand(opts));

}
