// The tokenizer goldens (shared/golden/tokenizer/*.jsonl): one encoding a line, from llama.cpp.
import { readFileSync } from 'node:fs';
import { golden } from './paths.js';

export interface TokenizerGoldenLine {
  src: string;
  text: string;
  add_bos: boolean;
  parse_special: boolean;
  ids: number[];
}

export function readTokenizerGolden(file: string): TokenizerGoldenLine[] {
  return readFileSync(golden('tokenizer', file), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as TokenizerGoldenLine);
}
