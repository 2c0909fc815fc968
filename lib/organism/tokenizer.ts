// A small byte-level BPE for the model organism, in the form the engine's GGUF tokenizer reads
// (native/model/tokenizer.cpp: tokenizer.ggml.model "gpt2", pre "llama-bpe"): the 256 byte tokens
// (GPT-2's byte-to-unicode spelling, ids in byte order, as native/model/random_model.cpp writes
// them), then the learned merges, then the special tokens. No learned merge touches a digit or one
// of + - * / = < > #, so the <<a+b=c>> annotations stay spelled out. With numberTokens, the numbers
// 10..N are one token each (merges of their digits, ranked first): a value is then a single token,
// which a small model computes and a probe or a latent target reads as one class.
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { native, type GgufMetadataEntry } from '../core/native.js';

/** The names and order of native/model/random_model.cpp's special tokens. */
export const ORGANISM_SPECIAL_TOKENS = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|pad|>', '<|bot|>', '<|eot_latent|>'] as const;

/** GGUF token types (llama.cpp's numbering). */
export const TOKEN_TYPE = { normal: 1, control: 3 } as const;

/** Bytes no merge may contain: digits and the calculator characters. */
export const UNMERGEABLE = '0123456789+-*/=<>#';

export const PRE_TOKENIZER = 'llama-bpe';

export interface OrganismTokenizer {
  /** Token texts by id, byte-level encoded (a space is "Ġ"). */
  tokens: string[];
  tokenTypes: number[];
  /** "left right", in rank order. */
  merges: string[];
  pre: typeof PRE_TOKENIZER;
  specialIds: { bos: number; eos: number; eot: number; pad: number; bot: number; eotLatent: number };
}

export interface TrainTokenizerOptions {
  /** Total vocabulary: 256 bytes + merges + 6 special tokens; default 384. Fewer when the corpus runs out of pairs. */
  vocabSize?: number;
  /** A pair must occur at least this often to be merged; default 2. */
  minFrequency?: number;
  /** Numbers 0..numberTokens (at most 99) one token each; default 0 (every digit its own token). */
  numberTokens?: number;
}

// ------------------------------------------------------------------ byte-level alphabet

function printable(b: number): boolean {
  return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/** GPT-2's byte-to-unicode table: printable bytes are themselves, the rest U+0100 onwards in byte order. */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const out: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : next++));
  return out;
})();

/** UTF-8 bytes of a text in the byte-level spelling. */
export function byteLevel(text: string): string {
  let s = '';
  for (const b of Buffer.from(text, 'utf8')) s += BYTE_TO_UNICODE[b];
  return s;
}

// Llama 3's pre-tokenizer (native/model/unicode.cpp split_llama3): contractions, words with one
// leading non-letter, digit runs of 1-3, punctuation runs, whitespace.
const LLAMA3_SPLIT = /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** The words the engine's llama-bpe pre-tokenizer cuts a text into. */
export function preTokenize(text: string): string[] {
  return text.match(LLAMA3_SPLIT) ?? [];
}

// ------------------------------------------------------------------ training

/**
 * Learns merges over the pre-tokenized words of `texts`: each round merges the most frequent
 * adjacent pair (ties: the smaller left text, then the smaller right text, by code units),
 * never a pair holding a digit or one of + - * / = < > #. Deterministic for the same texts.
 */
export function trainOrganismTokenizer(texts: readonly string[], options: TrainTokenizerOptions = {}): OrganismTokenizer {
  const vocabSize = options.vocabSize ?? 384;
  const minFrequency = options.minFrequency ?? 2;
  const floor = 256 + ORGANISM_SPECIAL_TOKENS.length;
  if (!Number.isInteger(vocabSize) || vocabSize < floor) throw new InputError(`organism tokenizer: vocabSize must be an integer >= ${floor} (256 bytes + ${ORGANISM_SPECIAL_TOKENS.length} special tokens)`);
  if (!Number.isInteger(minFrequency) || minFrequency < 1) throw new InputError('organism tokenizer: minFrequency must be a positive integer');

  const tokens: string[] = [...BYTE_TO_UNICODE];
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  const blocked = new Set<number>([...UNMERGEABLE].map((c) => c.charCodeAt(0)));
  const isBlocked = (id: number) => blocked.has(id) || id >= 256 && /^[0-9]+$/.test(tokens[id]);
  const isDigit = (id: number) => id >= 48 && id <= 57;

  // Distinct words with their counts, as symbol ids (bytes at first).
  const counts = new Map<string, number>();
  for (const text of texts) for (const w of preTokenize(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts.keys()].sort().map((w) => ({ syms: [...Buffer.from(w, 'utf8')], count: counts.get(w)! }));

  const merges: string[] = [];
  const numberTokens = options.numberTokens ?? 0;
  if (!Number.isInteger(numberTokens) || numberTokens < 0 || numberTokens > 99) throw new InputError('organism tokenizer: numberTokens must be an integer in 0..99');
  for (let n = 10; n <= numberTokens; n++) {
    const [a, b] = [...String(n)].map((c) => c.charCodeAt(0));
    const id = tokens.length;
    tokens.push(String(n));
    idOf.set(String(n), id);
    merges.push(`${tokens[a]} ${tokens[b]}`);
    for (const w of words) {
      const s = w.syms;
      let j = 0;
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b && (i + 2 >= s.length || !isDigit(s[i + 2])) && (i === 0 || !isDigit(s[i - 1]))) {
          s[j++] = id;
          i++;
        } else {
          s[j++] = s[i];
        }
      }
      s.length = j;
    }
  }
  const target = vocabSize - ORGANISM_SPECIAL_TOKENS.length;
  while (tokens.length < target) {
    const pairs = new Map<number, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const a = w.syms[i], b = w.syms[i + 1];
        if (isBlocked(a) || isBlocked(b)) continue;
        const key = a * 0x100000 + b;
        pairs.set(key, (pairs.get(key) ?? 0) + w.count);
      }
    }
    let best = -1;
    let bestCount = 0;
    for (const [key, c] of pairs) {
      if (c > bestCount) {
        best = key;
        bestCount = c;
      } else if (c === bestCount) {
        const [a, b] = [Math.floor(key / 0x100000), key % 0x100000];
        const [x, y] = [Math.floor(best / 0x100000), best % 0x100000];
        if (tokens[a] < tokens[x] || (tokens[a] === tokens[x] && tokens[b] < tokens[y])) best = key;
      }
    }
    if (best < 0 || bestCount < minFrequency) break;
    const a = Math.floor(best / 0x100000), b = best % 0x100000;
    const text = tokens[a] + tokens[b];
    // Two different pairs can spell the same text: the merge then reuses that token.
    let id = idOf.get(text);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(text);
      idOf.set(text, id);
    }
    merges.push(`${tokens[a]} ${tokens[b]}`);
    for (const w of words) {
      const s = w.syms;
      let j = 0;
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          s[j++] = id;
          i++;
        } else {
          s[j++] = s[i];
        }
      }
      s.length = j;
    }
  }

  const tokenTypes: number[] = tokens.map(() => TOKEN_TYPE.normal);
  const first = tokens.length;
  for (const s of ORGANISM_SPECIAL_TOKENS) {
    tokens.push(s);
    tokenTypes.push(TOKEN_TYPE.control);
  }
  return {
    tokens,
    tokenTypes,
    merges,
    pre: PRE_TOKENIZER,
    specialIds: { bos: first, eos: first + 1, eot: first + 2, pad: first + 3, bot: first + 4, eotLatent: first + 5 },
  };
}

// ------------------------------------------------------------------ GGUF

/** The tokenizer keys, as native/model/random_model.cpp writes them (plus the merges). */
export function tokenizerMetadata(tok: OrganismTokenizer): GgufMetadataEntry[] {
  return [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: tok.pre },
    { key: 'tokenizer.ggml.tokens', type: 'array:string', value: tok.tokens },
    { key: 'tokenizer.ggml.token_type', type: 'array:i32', value: tok.tokenTypes },
    { key: 'tokenizer.ggml.merges', type: 'array:string', value: tok.merges },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: tok.specialIds.bos },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: tok.specialIds.eos },
    { key: 'tokenizer.ggml.eot_token_id', type: 'u32', value: tok.specialIds.eot },
    { key: 'tokenizer.ggml.padding_token_id', type: 'u32', value: tok.specialIds.pad },
    { key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: true },
    { key: 'tokenizer.ggml.add_eos_token', type: 'bool', value: false },
  ];
}

/** Extra keys for writeTokenizerGguf: typed entries, or plain values whose GGUF type follows from the JS value. */
export type ExtraMetadata = readonly GgufMetadataEntry[] | Readonly<Record<string, string | number | bigint | boolean | readonly string[] | readonly number[]>>;

function entryOf(key: string, v: unknown): GgufMetadataEntry {
  const scalar = (x: unknown): string => {
    if (typeof x === 'string') return 'string';
    if (typeof x === 'boolean') return 'bool';
    if (typeof x === 'bigint') return x < 0n ? 'i64' : 'u64';
    if (typeof x === 'number') {
      if (!Number.isFinite(x)) throw new InputError(`metadata "${key}": ${x} is not a finite number`);
      if (!Number.isInteger(x)) return 'f32';
      if (x >= 0 && x <= 0xffffffff) return 'u32';
      if (x >= -0x80000000 && x < 0) return 'i32';
      return x < 0 ? 'i64' : 'u64';
    }
    throw new InputError(`metadata "${key}": cannot store a ${typeof x} in GGUF`);
  };
  if (Array.isArray(v)) {
    if (v.length === 0) return { key, type: 'array:string', value: [] };
    const types = new Set(v.map(scalar));
    // Integers and fractions in one array: all f32.
    const t = types.size === 1 ? [...types][0] : [...types].every((x) => x !== 'string' && x !== 'bool') ? 'f32' : null;
    if (t === null) throw new InputError(`metadata "${key}": an array must hold one kind of value`);
    return { key, type: `array:${t === 'u32' && v.some((x) => x < 0) ? 'i32' : t}`, value: v };
  }
  return { key, type: scalar(v), value: v };
}

function extraEntries(extra: ExtraMetadata): GgufMetadataEntry[] {
  if (Array.isArray(extra)) return [...(extra as readonly GgufMetadataEntry[])];
  return Object.entries(extra).map(([k, v]) => entryOf(k, v));
}

/**
 * A vocab-only GGUF (no tensors): general.architecture "llama", general.name, llama.vocab_size,
 * the tokenizer keys, then extraMetadata (typed entries, or a record of plain values; a key
 * already present is replaced). Written through a temporary file and renamed, so a reader never
 * sees half of it.
 */
export function writeTokenizerGguf(path: string, tok: OrganismTokenizer, extraMetadata: ExtraMetadata = []): void {
  const entries: GgufMetadataEntry[] = [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.name', type: 'string', value: 'organism-tokenizer' },
    { key: 'llama.vocab_size', type: 'u32', value: tok.tokens.length },
    ...tokenizerMetadata(tok),
  ];
  for (const e of extraEntries(extraMetadata)) {
    const at = entries.findIndex((x) => x.key === e.key);
    if (at >= 0) entries[at] = e;
    else entries.push(e);
  }
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    native().writeGguf(tmp, entries, []);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
