// Mistaken inputs get one clear line naming the flag or field (issue: nothing mixed, nothing lost).
import { describe, expect, it } from 'vitest';
import { loadModel } from '../lib/model.js';
import { runCli } from './helpers/cli.js';
import { golden } from './helpers/paths.js';

const tiny = golden('gguf', 'tiny-l3.f32.gguf');

describe('mistaken inputs', () => {
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
