import { say } from './labels.js';
import { count } from './wording.js';
import type { QuestionData, TaskContext, TaskDraft, TaskGenerator } from './types.js';

/** Positions asked about per question, layer, direction and region (prompt, answer). */
export const LENS_PER_REGION = 2;
export const LENS_MAX_K = 3;

type Direction = 'past' | 'future';

/** The window of k tokens before (past) or after (future) position p, or null when it leaves p's region or holds special tokens. */
export function lensWindow(q: QuestionData, p: number, k: number, dir: Direction, ctx: TaskContext): { start: number; end: number; text: string } | null {
  const kinds = q.record.positionKinds!;
  const start = dir === 'past' ? p - k : p + 1;
  const end = start + k;
  if (start < 0 || end > q.record.tokens.length) return null;
  for (let i = start; i < end; i++) {
    // Special tokens (BOS, eot, bot) render as nothing: a window with one would ask for an invisible token.
    if (kinds[i] !== kinds[p] || q.record.tokens[i] < 0 || ctx.detokenize([q.record.tokens[i]]) === '') return null;
  }
  const text = ctx.detokenize(q.record.tokens.slice(start, end));
  // A byte-level tokenizer can cut a character in two; such a window has no clean answer.
  if (text.trim() === '' || text.includes('\uFFFD')) return null;
  return { start, end, text };
}

function lens(dir: Direction): TaskGenerator {
  return {
    name: `${dir}_lens`,
    title: dir === 'past' ? 'the k tokens before a prompt/answer position, from its vector' : 'the k tokens after a prompt/answer position, from its vector',
    unavailable(q) {
      if (!q.record.positionKinds) return 'the capture record has no position kinds';
      const some = q.record.positionKinds.some((k, p) => (k === 'prompt' || k === 'answer') && q.captured.has(p));
      return some ? undefined : 'the capture holds no prompt or answer positions (capture with --positions including prompt,answer)';
    },
    generate(q, layer, ctx) {
      const out: TaskDraft[] = [];
      const kinds = q.record.positionKinds!;
      for (const region of ['prompt', 'answer'] as const) {
        const candidates = kinds
          .map((k, p) => ({ k, p }))
          .filter((c) => c.k === region && q.captured.has(c.p))
          .map((c) => ({ p: c.p, r: ctx.rand(`${q.id}/${dir}/${layer}/${c.p}`) }))
          .sort((a, b) => a.r - b.r);
        let taken = 0;
        for (const { p } of candidates) {
          if (taken >= LENS_PER_REGION) break;
          const k = 1 + Math.floor(ctx.rand(`${q.id}/${dir}/${layer}/${p}/k`) * LENS_MAX_K);
          const w = lensWindow(q, p, k, dir, ctx);
          if (!w) continue;
          taken++;
          out.push({
            key: `${region}${p}.k${k}`,
            question: ctx.say(`lens.${dir}`, `${q.id}/${dir}/${p}`, { tokens: count(k, 'token') }),
            answer: say(w.text),
            vectors: { record: 'main', positions: [p] },
            source: { position: p, kind: region, k, window: [w.start, w.end], tokens: q.record.tokens.slice(w.start, w.end) },
          });
        }
      }
      return out;
    },
  };
}

/**
 * Past lens (Activation Oracles' context prediction, backwards). One vector at a prompt or
 * answer position; the oracle writes the k = 1..3 tokens just before it. A residual-stream
 * vector holds its context, and reading it back is dense supervision that does not depend on
 * the model being right: it teaches the oracle to read vectors at all, which the reasoning tasks
 * then build on.
 */
export const pastLens = lens('past');

/**
 * Future lens (context prediction, forwards). One vector at a prompt or answer position; the
 * oracle writes the k = 1..3 tokens that follow it. What comes next is partly planned in the
 * vector (the rest of a number, the next word), so this reads the model's intent at a position.
 */
export const futureLens = lens('future');
