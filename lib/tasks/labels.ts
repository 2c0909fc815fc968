// Answer strings of oracle examples. Labels must be short (the oracle learns to say them) and
// checkable (eval compares strings), so a model's free-form answer is reduced to one key: the
// last number it wrote, else its first few words. Two answers are "the same" when their keys are.
import { lastNumber } from '../core/answers.js';

/** Longest text label kept from an answer without a number, in characters. */
export const TEXT_LABEL_CHARS = 24;

/** "18.00", "+18" and "018" are the same number. */
export function canonicalNumber(s: string): string {
  let t = s.trim().replace(/,/g, '').replace(/^\+/, '');
  if (/^-?\d+\.\d*$/.test(t)) t = t.replace(/0+$/, '').replace(/\.$/, '');
  if (/^-?0+\d/.test(t)) t = t.replace(/^(-?)0+(\d)/, '$1$2');
  if (t === '-0') t = '0';
  return t;
}

/** The key of a model answer: its last number, else its first words (whitespace collapsed), else "(nothing)". */
export function answerKey(text: string): string {
  const n = lastNumber(text);
  if (n !== null) return canonicalNumber(n);
  // Control characters and broken UTF-8 (a random model's bytes) would make labels unreadable and untypeable.
  const t = text.replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, ' ').replace(/\s+/g, ' ').trim();
  if (t === '') return '(nothing)';
  // Code points, not UTF-16 units: a cut must not split a character.
  const cps = Array.from(t);
  return cps.length > TEXT_LABEL_CHARS ? cps.slice(0, TEXT_LABEL_CHARS).join('').trimEnd() : t;
}

export function sameAnswer(a: string, b: string): boolean {
  return answerKey(a) === answerKey(b);
}

/** An answer as the oracle writes it: one leading space, as the oracle-lora goldens. */
export function say(text: string | number): string {
  return ' ' + String(text).trim();
}

export const YES = ' Yes';
export const NO = ' No';
export const yesNo = (b: boolean): string => (b ? YES : NO);

/** The question's first sentence (up to the first ". ", "? " or "! "), whole when it has one only. */
export function firstSentence(q: string): string {
  const t = q.replace(/\s+/g, ' ').trim();
  // A period between digits ("2.5") does not end a sentence.
  const m = /^(.+?[.?!])(?=\s+[A-Z"'(])/.exec(t);
  return m ? m[1] : t;
}

/** Integers and decimals written in a text, with where they are ("1,200" counts as 1200). */
export function numbersIn(text: string): { text: string; index: number; value: string }[] {
  const out: { text: string; index: number; value: string }[] = [];
  for (const m of text.matchAll(/\d[\d,]*(?:\.\d+)?/g)) {
    const raw = m[0].replace(/,+$/, '');
    out.push({ text: raw, index: m.index!, value: canonicalNumber(raw) });
  }
  return out;
}

/** Normalisation used to grade an answer against a label: case, spacing and a final period do not matter. */
export function normaliseAnswer(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim().replace(/\.$/, '').toLowerCase();
  return /^[-+]?[\d,]*\.?\d+$/.test(t) ? canonicalNumber(t) : t;
}

export function gradeAnswer(predicted: string, label: string): boolean {
  return normaliseAnswer(predicted) === normaliseAnswer(label);
}
