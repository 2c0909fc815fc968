// Mistaken inputs get one clear line naming the flag or field (issue: nothing mixed, nothing lost).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../lib/engine/model.js';
import { expectUserError, runCli } from './helpers/cli.js';
import { golden } from './helpers/paths.js';

const tiny = golden('gguf', 'tiny-l3.f32.gguf');

const tmp = mkdtempSync(join(tmpdir(), 'lro-inputs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mistaken inputs', () => {
  it('an output folder where a file is, or under a file: one line naming the path, no raw EEXIST', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'x');
    const base = ['capture', '-m', tiny, '--prompt', 'hi', '--points', 'final_norm', '--plain', '-q'];
    expectUserError(await runCli([...base, '-o', file]), new RegExp(`cannot create the folder ${file}: a file of that name is in the way`));
    expectUserError(await runCli([...base, '-o', join(file, 'sub')]), /a-file\/sub: a part of this path is a file, not a folder/);
  });

  it('LRO_DEBUG=1 adds the native stack where a file was refused; without it, one line', async () => {
    const bad = join(tmp, 'cut.gguf');
    writeFileSync(bad, readFileSync(tiny).subarray(0, 100));
    const plain = await runCli(['info', bad]);
    expectUserError(plain, /cut\.gguf: tensor_count at offset 8/);
    const debug = await runCli(['info', bad], { env: { LRO_DEBUG: '1' } });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/cut\.gguf: tensor_count at offset 8[^\n]*\nnative stack:\n(\s+at .*\n)+/);
    expect(debug.stderr).toMatch(/GgufFile5parse/);
  });

  it('convert given a file says it wants a folder (a GGUF: that it is converted already)', async () => {
    expectUserError(await runCli(['convert', tiny, '-o', join(tmp, 'x.gguf')]), /is a GGUF file already; convert reads a Hugging Face model folder/);
    const cfg = join(tmp, 'config.json');
    writeFileSync(cfg, '{}');
    expectUserError(await runCli(['convert', cfg, '-o', join(tmp, 'x.gguf')]), /is a file; convert reads a Hugging Face model folder \(give the folder holding config\.json/);
  });

  it('--threads beyond any machine is refused, naming the flag', async () => {
    const r = await runCli(['generate', '--model', tiny, '--prompt', 'hi', '--threads', '1000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--threads <n>' argument '1000' is invalid\. expected 0 \(the physical cores\) or a thread count up to 256/);
  });

  it('-n past the context a session allows names -n, not an internal option', async () => {
    const r = await runCli(['generate', '--model', tiny, '--prompt', 'hi', '-n', '99999999999']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/-n, --n-predict <count>' argument '99999999999' is invalid/);
    expect(r.stderr).not.toMatch(/nCtx/);
  });

  it('info names <|eot_id|> as the end of turn of a Llama 3 vocabulary', async () => {
    const r = await runCli(['info', tiny]);
    expect(r.stdout).toMatch(/eos 1998, eot 1999/);
  });

  it('an empty token list says so', async () => {
    const m = await loadModel(tiny);
    const s = m.createSession({});
    try {
      await expect(s.eval({ tokens: [] })).rejects.toThrow('eval: tokens is empty');
    } finally {
      s.dispose();
      m.dispose();
    }
  });
});
