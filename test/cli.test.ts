// CLI: info, tokenize, generate, and one-line errors with exit code 1 for bad input.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadModel } from '../lib/index.js';
import { expectUserError, runCli, type CliResult } from './helpers/cli.js';
import { buildGguf } from './helpers/gguf.js';
import { golden, modelPath } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


function goldenLine(file: string, src: string, addBos: boolean, parseSpecial: boolean): { text: string; ids: number[] } {
  for (const l of readFileSync(golden('tokenizer', file), 'utf8').split('\n')) {
    if (!l) continue;
    const o = JSON.parse(l);
    if (o.src === src && o.add_bos === addBos && o.parse_special === parseSpecial) return o;
  }
  throw new Error(`no ${src} in ${file}`);
}

describe('lro-native info', () => {
  test('human-readable summary of the f32 model', async () => {
    const r = await runCli(['info', modelPath('f32')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/architecture\s+llama/);
    expect(r.stdout).toMatch(/layers\s+4/);
    expect(r.stdout).toMatch(/tensors\s+39 \(3,660,832 parameters\): f32 39/);
    expect(r.stdout).toMatch(/tokenizer\s+gpt2 \(pre llama-bpe\), 2003 tokens; bos 1997, eos 1998/);
    expect(r.stdout).toMatch(/tokenizer\.ggml\.tokens = \[string × 2003\]/);
    expect(r.stdout).toMatch(/llama\.rope\.freq_base = 500000/);
    expect(r.stdout).toMatch(/rms eps\s+0\.00001\n/);
    expect(r.stdout).toMatch(/layer_norm_rms_epsilon = 0\.00001\n/);
  });

  test('--json on the q4_k_m model: tensor type counts and summarised arrays', async () => {
    const r = await runCli(['info', modelPath('q4_k_m'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ architecture: 'llama', nVocab: 2003, nEmbd: 256, nLayer: 4, nHead: 4, nHeadKv: 2, tiedOutput: true, hasRopeFreqs: true });
    expect(j.tensorTypes).toEqual({ q4_K: 24, q6_K: 5, f32: 10 });
    expect(j.metadata['tokenizer.ggml.tokens']).toEqual({ arrayOf: 'string', length: 2003 });
    expect(j.metadata['llama.block_count']).toBe(4);
    expect(j.tensors).toHaveLength(39);
  });

  test('a vocab-only file', async () => {
    const r = await runCli(['info', golden('tokenizer', 'ggml-vocab-llama-bpe-rebuilt.gguf'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.vocabOnly).toBe(true);
    expect(j.tokenizer).toMatchObject({ model: 'gpt2', nTokens: 128256, bos: 128000 });
  });
});

describe('lro-native tokenize', () => {
  test.each([
    { file: 'tiny.jsonl', vocab: ['gguf', 'tiny-l3.f32.gguf'], src: 'edge:34', bos: true, special: true },
    { file: 'tiny.jsonl', vocab: ['gguf', 'tiny-l3.f32.gguf'], src: 'edge:34', bos: false, special: false },
    { file: 'llama3.jsonl', vocab: ['tokenizer', 'ggml-vocab-llama-bpe-rebuilt.gguf'], src: 'gsm8k-test:0', bos: true, special: false },
    { file: 'llama-spm.jsonl', vocab: ['tokenizer', 'ggml-vocab-llama-spm.gguf'], src: 'edge:10', bos: false, special: true },
  ])('$file $src bos=$bos special=$special', async ({ file, vocab, src, bos, special }) => {
    const line = goldenLine(file, src, bos, special);
    const args = ['tokenize', '--model', golden(...vocab)];
    if (!bos) args.push('--no-bos');
    if (special) args.push('--parse-special');
    const r = await runCli([...args, line.text]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(line.ids);
  });
});

describe('lro-native generate', () => {
  test('greedy text equals the library generate()', async () => {
    const prompt = 'A robe takes 2 bolts of';
    const r = await runCli(['generate', '--model', modelPath('f32'), '--prompt', prompt, '-n', '12', '--temperature', '0', '--threads', '1']);
    expect(r.code, r.stderr).toBe(0);
    const model = await loadModel(modelPath('f32'));
    try {
      const g = await model.generate(prompt, { maxTokens: 12, temperature: 0, session: { threads: 1 } });
      expect(g.tokens.length).toBeGreaterThan(0);
      expect(r.stdout).toBe(g.text + '\n');
    } finally {
      model.dispose();
    }
  });

  test('seeded sampling is reproducible', async () => {
    const args = ['generate', '--model', modelPath('f32'), '--prompt', 'Janet has', '-n', '10', '--temperature', '0.8', '--seed', '7', '--top-k', '40'];
    const [a, b] = await Promise.all([runCli(args), runCli(args)]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(b.stdout);
  });
});

describe('bad input: one line on stderr, exit code 1', () => {
  const m = () => modelPath('f32');
  test('missing model file', async () => {
    expectUserError(await runCli(['info', join(tmp, 'nope.gguf')]), /model file not found: .*nope\.gguf/);
    expectUserError(await runCli(['tokenize', '--model', join(tmp, 'nope.gguf'), 'hi']), /model file not found/);
  });
  test('not a GGUF file', async () => {
    const p = join(tmp, 'bad-magic.gguf');
    writeFileSync(p, buildGguf({ magic: 'GGUX' }));
    expectUserError(await runCli(['info', p]), /bad-magic\.gguf.*magic/);
  });
  test('bad numeric flag', async () => {
    expectUserError(await runCli(['generate', '-m', m(), '-p', 'x', '-n', 'abc']), /n-predict.*integer/);
    expectUserError(await runCli(['generate', '-m', m(), '-p', 'x', '--temperature', '-1']), /temperature/);
    expectUserError(await runCli(['generate', '-m', m(), '-p', 'x', '--top-p', '0']), /top-p/);
  });
  test('missing required option', async () => {
    expectUserError(await runCli(['generate', '-m', m()]), /--prompt/);
  });
  test('bad capture flags', async () => {
    const out = join(tmp, 'cap-bad');
    expectUserError(await runCli(['capture', '-m', m(), '-p', 'x', '-o', out, '--dtype', 'f8']), /dtype.*f8/);
    expectUserError(await runCli(['capture', '-m', m(), '-p', 'x', '-o', out, '--layers', '9']), /layer 9 is out of range/);
    expectUserError(await runCli(['capture', '-m', m(), '-p', 'x', '-o', out, '--layers', 'x']), /layers/);
    expectUserError(await runCli(['capture', '-m', m(), '-p', 'x', '-o', out, '--points', 'logits,resid_postt']), /unknown capture point "resid_postt"/);
    expectUserError(await runCli(['capture', '-m', m(), '-o', out]), /exactly one of --prompt, --tokens or --data/);
    expectUserError(await runCli(['capture', '-m', m(), '-p', 'x', '--tokens', '1,2', '-o', out]), /exactly one of/);
    expectUserError(await runCli(['capture', '-m', m(), '--tokens', '1,x', '-o', out]), /tokens.*"x"/);
    expectUserError(await runCli(['capture', '-m', m(), '--tokens', '1,99999', '-o', join(tmp, 'cap-vocab')]), /99999.*vocabulary/);
    expectUserError(await runCli(['capture', '-m', m(), '--data', join(tmp, 'none.jsonl'), '-o', out]), /data file not found: .*none\.jsonl/);
  });
  test('malformed JSONL names the file and line', async () => {
    const p = join(tmp, 'bad.jsonl');
    writeFileSync(p, '{"question": "What is 2+2?"}\n{"question": "broken\n');
    expectUserError(await runCli(['capture', '-m', m(), '--data', p, '-o', join(tmp, 'cap-jsonl1'), '-q']), /bad\.jsonl: line 2: not valid JSON/);
    const q = join(tmp, 'nofield.jsonl');
    writeFileSync(q, '{"text": "hello"}\n');
    expectUserError(await runCli(['capture', '-m', m(), '--data', q, '-o', join(tmp, 'cap-jsonl2'), '-q']), /nofield\.jsonl: line 1: expected a string field "question" or "prompt"/);
    const r = join(tmp, 'array.jsonl');
    writeFileSync(r, '[1, 2]\n');
    expectUserError(await runCli(['capture', '-m', m(), '--data', r, '-o', join(tmp, 'cap-jsonl3'), '-q']), /line 1: expected a JSON object/);
  });
  test('vocab-only file where weights are needed', async () => {
    expectUserError(await runCli(['generate', '-m', golden('tokenizer', 'ggml-vocab-llama-spm.gguf'), '-p', 'x']), /vocab-only/);
  });
});
