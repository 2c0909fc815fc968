// Answer checking for GSM8K-style data: the gold answer follows "####", and a model's answer
// counts as correct when the last number in it equals the gold number. These are string rules
// on text, kept apart from the engine.

/** The text after the last "####" of a GSM8K answer, commas removed; null when there is none. */
export function goldAnswer(answer: string | undefined): string | null {
  if (typeof answer !== 'string') return null;
  const at = answer.lastIndexOf('####');
  if (at < 0) return null;
  const g = answer.slice(at + 4).trim().replace(/,/g, '');
  return g === '' ? null : g;
}

/** The last number written in a text ("$1,200." gives "1200"), or null. */
export function lastNumber(text: string): string | null {
  const all = text.match(/-?\d[\d,]*(?:\.\d+)?/g);
  if (!all) return null;
  return all[all.length - 1].replace(/,/g, '');
}

// One spelling per number: "18.00" and "18" are the same answer, as are "+5" and "5".
function canonical(s: string): string {
  let t = s.trim().replace(/,/g, '').replace(/^\+/, '');
  if (/^-?\d+\.\d*$/.test(t)) t = t.replace(/0+$/, '').replace(/\.$/, '');
  if (/^-?0+\d/.test(t)) t = t.replace(/^(-?)0+(\d)/, '$1$2');
  if (t === '-0') t = '0';
  return t;
}

/** Whether the last number of a model's answer equals the gold answer. */
export function isCorrect(modelAnswer: string, gold: string): boolean {
  const n = lastNumber(modelAnswer);
  return n !== null && canonical(n) === canonical(gold);
}
