// Tokenizer goldens (README §6): every line, exact ids, for three vocabularies.
import { describe, expect, test } from 'vitest';
import { loadModel } from '../lib/index.js';
import { golden } from './helpers/paths.js';
import { readTokenizerGolden } from './helpers/tokenizer-golden.js';


const CASES = [
  { file: 'llama3.jsonl', vocab: ['tokenizer', 'ggml-vocab-llama-bpe-rebuilt.gguf'], facts: { model: 'gpt2', nTokens: 128256, bos: 128000, eos: 128001 } },
  { file: 'llama-spm.jsonl', vocab: ['tokenizer', 'ggml-vocab-llama-spm.gguf'], facts: { model: 'llama', nTokens: 32000, bos: 1, eos: 2 } },
  { file: 'tiny.jsonl', vocab: ['gguf', 'tiny-l3.f32.gguf'], facts: { model: 'gpt2', nTokens: 2003, bos: 1997, eos: 1998 } },
];

describe('tokenizer goldens', () => {
  test.each(CASES)('$file', async ({ file, vocab, facts }) => {
    const lines = readTokenizerGolden(file);
    expect(lines.length).toBe(960);
    const model = await loadModel(golden(...vocab), { vocabOnly: true });
    try {
      expect(model.info.tokenizer).toMatchObject(facts);
      const bad: string[] = [];
      for (const l of lines) {
        const ids = model.tokenize(l.text, { addBos: l.add_bos, parseSpecial: l.parse_special });
        if (JSON.stringify(ids) !== JSON.stringify(l.ids))
          bad.push(`${l.src} bos=${l.add_bos} special=${l.parse_special} ${JSON.stringify(l.text).slice(0, 60)}: got ${JSON.stringify(ids).slice(0, 80)} want ${JSON.stringify(l.ids).slice(0, 80)}`);
      }
      console.log(`tokenizer ${file}: ${lines.length - bad.length}/${lines.length} exact`);
      expect(bad.slice(0, 5), `${bad.length} of ${lines.length} lines differ`).toEqual([]);
    } finally {
      model.dispose();
    }
  });
});
