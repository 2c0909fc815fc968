// Training examples for latent reasoners: a problem (question, CoT steps, answer) turned into the
// ids and labels of the CODI / Coconut / LM objectives, exactly as ../shared/golden/hf/README.md's
// codi-train section lays them out. Text rules only; the engine computes everything else.
//
//   tok(s) = the model's tokenizer without BOS;  P = tok(" The answer is:");  A = tok(" " + answer)
//   CODI student: prompt [bos] tok(q) [bot], latents, suffix [eot] P A [eos] (targets A, eos)
//   CODI teacher: [bos] tok(q) [bot] tok(" " + cot) [eot] P A [eos]            (targets CoT, A, eos)
//   Coconut stage s: prompt as CODI, s latents, [eot] tok(" " + steps[s..]) P A [eos] (targets after eot)
//   LM: the CODI teacher sequence (targets CoT, A, eos)
import { goldAnswer } from '../core/answers.js';
import type { LatentSettings } from '../reasoning/latent-head.js';
import type { Model } from '../engine/model.js';
import type { NativeLatentExample } from '../core/native.js';

export const ANSWER_PROMPT = ' The answer is:';
const IGNORE = -100;

export interface LatentProblem {
  question: string;
  /** CoT steps in order (GSM8K: the <<...>> annotations). */
  steps: string[];
  answer: string;
}

/**
 * A problem from a data line: GSM8K's {question, answer} (the CoT is the answer's <<...>>
 * annotations, the answer the text after ####, commas removed), or {question, cot, answer} with cot
 * a string (its <<...>> annotations, else the whole string as one step) or an array of steps.
 * Throws an Error naming the field that is missing or malformed.
 */
export function problemFromLine(line: Record<string, unknown>): LatentProblem {
  const q = line.question;
  if (typeof q !== 'string' || q.trim() === '') throw new Error("field 'question': expected a non-empty string");
  const question = q.trim();
  if (line.cot !== undefined) {
    const cot = line.cot;
    let steps: string[];
    if (Array.isArray(cot) && cot.every((s) => typeof s === 'string')) steps = cot as string[];
    else if (typeof cot === 'string') steps = annotations(cot).length ? annotations(cot) : cot.trim() ? [cot.trim()] : [];
    else throw new Error("field 'cot': expected a string or an array of strings");
    const a = line.answer;
    const answer = typeof a === 'number' ? String(a) : typeof a === 'string' ? (goldAnswer(a) ?? a.trim().replace(/,/g, '')) : null;
    if (!answer) throw new Error("field 'answer': expected a number or a non-empty string");
    return { question, steps, answer };
  }
  if (typeof line.answer !== 'string') throw new Error("field 'answer': expected GSM8K's answer text (with '#### N'), or give 'cot' and 'answer'");
  const answer = goldAnswer(line.answer);
  if (answer === null) throw new Error("field 'answer': no '#### N' final answer in it");
  return { question, steps: annotations(line.answer), answer };
}

/** The <<...>> calculator annotations of a text, in order. */
export function annotations(text: string): string[] {
  return text.match(/<<[^<>]*>>/g) ?? [];
}

export type LatentObjectiveName = 'codi' | 'coconut' | 'lm';

export interface LatentIdsOptions {
  objective: LatentObjectiveName;
  /** Coconut: the stage s (latent steps replacing the first s CoT steps). */
  stage?: number;
  /** Coconut: latent steps per replaced CoT step (Coconut's c); the stage runs s x c of them. Default 1. */
  latentsPerStep?: number;
  /** Also supervise the answer prompt P (the golden does not; a model trained so writes P itself). */
  supervisePrompt?: boolean;
  /**
   * Coconut: also train the source row of each replaced step's last latent (the row whose final
   * state becomes that latent's input) to predict the step's result: the first token of the text after the step's last '=' (the answer's
   * first token for latent steps past the last CoT step). Not in Coconut or CODI; the organism uses
   * it so that each latent step carries its step's value.
   */
  latentTargets?: boolean;
  /**
   * With latentTargets and 2+ latents per step: the latent before each step's last also predicts
   * the step's last operand (the last number before its '='; the answer again past the last CoT
   * step), so a step's latents carry what it reads and then what it computes.
   */
  operandTargets?: boolean;
}

/** The last operand of a CoT step: the last number before its last '=' ("<<25*3=75>>" gives "3"). */
export function stepOperand(step: string): string | null {
  const eq = step.lastIndexOf('=');
  if (eq < 0) return null;
  const m = /(\d+(?:\.\d+)?)\D*$/.exec(step.slice(0, eq));
  return m ? m[1] : null;
}

/** The result a CoT step computes: the text after its last '=' ("<<25*3=75>>" gives "75"). */
export function stepResult(step: string): string | null {
  const m = /=\s*([^=<>]*?)\s*(?:>>)?\s*$/.exec(step);
  return m && m[1] !== '' ? m[1] : null;
}

/** The ids of one problem for the objective; bot / eot from the latent head, bos / eos from the tokenizer. */
export function latentIds(model: Model, head: LatentSettings | null, p: LatentProblem, o: LatentIdsOptions): NativeLatentExample {
  const { bos, eos } = model.info.tokenizer;
  const tok = (s: string) => model.tokenize(s, { addBos: false });
  const bot = head?.botId ?? -1;
  const eot = head?.eotId ?? -1;
  if (o.objective !== 'lm' && (bot < 0 || eot < 0))
    throw new Error('the latent head defines no bot / eot token ids; training through latent steps needs both');
  if (bos < 0 || eos < 0) throw new Error("the model's tokenizer has no BOS or EOS token");
  const P = tok(ANSWER_PROMPT);
  const A = tok(' ' + p.answer);
  const q = tok(p.question);
  const sup = (ids: number[], on: boolean) => ids.map((id) => (on ? id : IGNORE));
  const prompt = [bos, ...q, ...(bot >= 0 ? [bot] : [])];
  const i32 = (a: number[]) => Int32Array.from(a);
  const supP = o.supervisePrompt ?? false;

  if (o.objective === 'coconut') {
    const s = o.stage ?? 0;
    if (!Number.isInteger(s) || s < 0) throw new Error(`coconut stage ${s}: expected a non-negative integer`);
    const rest = p.steps.slice(s).join(' ');
    const C = rest ? tok(' ' + rest) : [];
    const suffix = [eot, ...C, ...P, ...A, eos];
    const labels = [IGNORE, ...C, ...P, ...A, eos];
    const ex: NativeLatentExample = { prompt: i32(prompt), suffix: i32(suffix), suffixLabels: i32(labels) };
    if (o.latentTargets) {
      // The last latent of each replaced step predicts its result (the one before it, with
      // operandTargets, its last operand); the others are free.
      const c = o.latentsPerStep ?? 1;
      const operands = (o.operandTargets ?? false) && c >= 2;
      const targets: number[] = [];
      const first = (text: string) => {
        const ids = tok(text);
        if (ids.length === 0) throw new Error(`latent target ${JSON.stringify(text)} tokenizes to nothing`);
        return ids[0];
      };
      for (let k = 0; k < s; k++) {
        const text = k < p.steps.length ? stepResult(p.steps[k]) : p.answer;
        if (text === null) throw new Error(`CoT step ${k + 1} (${JSON.stringify(p.steps[k])}) has no '= result' to use as its latent target`);
        const operand = !operands ? null : k < p.steps.length ? stepOperand(p.steps[k]) : p.answer;
        if (operands && operand === null) throw new Error(`CoT step ${k + 1} (${JSON.stringify(p.steps[k])}) has no operand before its '=' to use as a latent target`);
        for (let j = 0; j + (operands ? 2 : 1) < c; j++) targets.push(IGNORE);
        if (operand !== null) targets.push(first(operand));
        targets.push(first(text));
      }
      ex.latentLabels = i32(targets);
    }
    return ex;
  }
  const C = p.steps.length ? tok(' ' + p.steps.join(' ')) : [];
  const teacher = [...prompt, ...C, eot, ...P, ...A, eos];
  const teacherLabels = [...sup(prompt, false), ...C, IGNORE, ...sup(P, supP), ...A, eos];
  if (o.objective === 'lm') return { teacher: i32(teacher), teacherLabels: i32(teacherLabels) };
  const suffix = [eot, ...P, ...A, eos];
  const suffixLabels = [IGNORE, ...sup(P, supP), ...A, eos];
  return {
    prompt: i32(prompt),
    suffix: i32(suffix),
    suffixLabels: i32(suffixLabels),
    teacher: i32(teacher),
    teacherLabels: i32(teacherLabels),
    // The last token of P predicts the answer: its hidden states are distilled.
    studentDistill: P.length,
    teacherDistill: prompt.length + C.length + P.length,
  };
}
