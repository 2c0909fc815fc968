// The organism's targets (issue: a model organism that reasons in latents), measured on fresh
// problems by the same code as `lro-native organism eval`, printed beside the bar each one has to
// clear, with the time it took. `npm run bench:organism [-- --json]`.
// Knobs: BENCH_MODEL (default: the built-in organism), BENCH_N (200), BENCH_SEED (1001),
// BENCH_THREADS (2), BENCH_PROBE_TRAIN (2000). Test problems use the phrasings the organism was
// trained on (held out by seed); problems with held-out phrasings are reported beside them.
import { builtinModel } from '../lib/engine/demo-model.js';
import { evaluateOrganism } from '../lib/organism/evaluate.js';

const asJson = process.argv.includes('--json');
const model = process.env.BENCH_MODEL ?? builtinModel().model;
const report = await evaluateOrganism({
  model,
  n: Number(process.env.BENCH_N ?? 200),
  seed: Number(process.env.BENCH_SEED ?? 1001),
  steps: [3, 3],
  templates: 'train',
  probeTrain: Number(process.env.BENCH_PROBE_TRAIN ?? 2000),
  threads: Number(process.env.BENCH_THREADS ?? 2),
});
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const drops = report.zeroAblation.map((r) => report.withLatents.accuracy - r.accuracy);
const p = report.withLatents.accuracy;
const noise = 2 * Math.sqrt((p * (1 - p)) / Math.max(1, report.withLatents.n));
const bestProbe = report.probe ? report.probe.best.map((row) => Math.max(...row)) : [];
const rows: [string, string, string, boolean][] = [
  ['accuracy with latents (3-step, fresh)', pct(report.withLatents.accuracy), '>= 90%', report.withLatents.accuracy >= 0.9],
  ['accuracy with latents, held-out phrasings', pct(report.heldoutPhrasings?.accuracy ?? 0), '(reported)', true],
  ['accuracy without latents', pct(report.withoutLatents.accuracy), '<= 50%', report.withoutLatents.accuracy <= 0.5],
  // A drop counts when it is beyond twice the standard error of the accuracy itself.
  ['largest drop from zeroing one latent step', pct(Math.max(0, ...drops)), `> ${pct(noise)} (2 standard errors)`, Math.max(0, ...drops) > noise],
  ...bestProbe.map((b, j): [string, string, string, boolean] => [`best linear probe of step ${j + 1}'s result`, pct(b), '>= 80% (some step)', b >= 0.8]),
];
if (asJson) {
  process.stdout.write(JSON.stringify({ model, rows: rows.map(([what, value, bar, met]) => ({ what, value, bar, met })), report }, null, 1) + '\n');
} else {
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  const lines = [`organism bench: ${model}, ${report.settings.n} fresh 3-step problems, ${report.settings.latentSteps} latent steps, ${(report.elapsedMs / 1000).toFixed(1)} s`];
  for (const [what, value, bar, met] of rows) lines.push(`  ${what.padEnd(w)}${value.padStart(7)}   target ${bar}${met ? '' : '   (not met)'}`);
  process.stdout.write(lines.join('\n') + '\n');
}
