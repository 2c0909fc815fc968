// report.html: one self-contained page (inline SVG and CSS, no script, no network) for a pipeline
// run (studyHtml) or for any trace file (traceHtml). Charts: accuracy bars with 95% intervals for
// the oracle and every baseline, the probe table (step x layer), the logit-lens heatmap and
// early-decode evolution of sample questions, the ablation effect matrix (step x kind), the causal
// map (patch-sweep) and inversion examples. Numbers only come from the report, traces and
// instruments given; nothing is recomputed here.
import { isCorrect, lastNumber } from '../core/answers.js';
import { answerKey } from '../tasks/labels.js';
import type { TraceRecord } from '../tasks/inputs.js';
import type { PipelineReport, ReportScore } from './pipeline-report.js';
import type { InstrumentsResult } from './study.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** Tokens as shown: spaces visible, control characters escaped. */
const tok = (s: string) => esc(s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).replace(/ /g, '\u2423'));
const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(1)}%`);

const CONDITIONS = [
  { key: 'oracle', label: 'oracle', color: '#1f6feb' },
  { key: 'noVectors', label: 'no vectors', color: '#8b949e' },
  { key: 'shuffled', label: 'shuffled', color: '#c9a227' },
  { key: 'logitLens', label: 'logit lens', color: '#8250df' },
  { key: 'questionOnly', label: 'question only', color: '#2da44e' },
  { key: 'probe', label: 'linear probe', color: '#cf222e' },
] as const;

/** A colour from white (0) to blue (1); null is grey. */
function shade(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '#eeeeee';
  const t = Math.max(0, Math.min(1, v));
  const c = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${c(255, 31)},${c(255, 111)},${c(255, 235)})`;
}

/** A diverging colour for values in [-1, 1] (red negative, blue positive). */
function diverge(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '#eeeeee';
  const t = Math.max(-1, Math.min(1, v));
  const c = (a: number, b: number, f: number) => Math.round(a + (b - a) * f);
  return t >= 0 ? `rgb(${c(255, 31, t)},${c(255, 111, t)},${c(255, 235, t)})` : `rgb(${c(255, 207, -t)},${c(255, 34, -t)},${c(255, 46, -t)})`;
}

/** Grouped horizontal bars, one group per row, with interval whiskers. */
function barChart(rows: { label: string; scores: (ReportScore | null)[] }[]): string {
  const used = CONDITIONS.map((_, k) => rows.some((r) => r.scores[k] && r.scores[k]!.n > 0));
  const conds = CONDITIONS.filter((_, k) => used[k]);
  const bar = 9;
  const groupH = conds.length * (bar + 2) + 10;
  const left = 170;
  const width = 520;
  const h = rows.length * groupH + 40;
  const x = (v: number) => left + v * width;
  const parts: string[] = [`<svg class="chart" role="img" width="${left + width + 30}" height="${h}" viewBox="0 0 ${left + width + 30} ${h}">`];
  for (let t = 0; t <= 4; t++) {
    const v = t / 4;
    parts.push(`<line x1="${x(v)}" y1="10" x2="${x(v)}" y2="${h - 25}" stroke="#ddd"/><text x="${x(v)}" y="${h - 10}" font-size="10" text-anchor="middle">${100 * v}%</text>`);
  }
  rows.forEach((r, i) => {
    const y0 = 12 + i * groupH;
    parts.push(`<text x="${left - 6}" y="${y0 + groupH / 2}" font-size="11" text-anchor="end" dominant-baseline="middle">${esc(r.label)}</text>`);
    let k = 0;
    CONDITIONS.forEach((c, ci) => {
      if (!used[ci]) return;
      const s = r.scores[ci];
      const y = y0 + k * (bar + 2);
      k++;
      if (!s || s.accuracy === null) return;
      parts.push(`<rect x="${left}" y="${y}" width="${Math.max(0.5, s.accuracy * width)}" height="${bar}" fill="${c.color}"><title>${esc(`${r.label} · ${c.label}: ${pct(s.accuracy)} of ${s.n}`)}</title></rect>`);
      if (s.ci95) parts.push(`<line x1="${x(s.ci95[0])}" y1="${y + bar / 2}" x2="${x(s.ci95[1])}" y2="${y + bar / 2}" stroke="#222" stroke-width="1.2"/>`);
    });
  });
  parts.push('</svg>');
  const legend = conds.map((c) => `<span class="key"><i style="background:${c.color}"></i>${c.label}</span>`).join(' ');
  return `<div class="legend">${legend}</div>${parts.join('')}`;
}

/** A heatmap with a label per row and column; cells show text (default the value as a percentage). */
function heatmap(
  rowLabels: string[],
  colLabels: string[],
  cell: (r: number, c: number) => { value: number | null; text?: string; title?: string },
  colour: (v: number | null) => string = shade,
): string {
  const cw = Math.max(56, ...colLabels.map((l) => 7 * l.length + 8));
  const ch = 22;
  const left = Math.max(60, ...rowLabels.map((l) => 6.5 * l.length + 10));
  const top = 24;
  const w = left + colLabels.length * cw + 4;
  const h = top + rowLabels.length * ch + 4;
  const parts = [`<svg class="chart" role="img" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">`];
  colLabels.forEach((l, c) => parts.push(`<text x="${left + c * cw + cw / 2}" y="${top - 8}" font-size="11" text-anchor="middle">${esc(l)}</text>`));
  rowLabels.forEach((l, r) => {
    parts.push(`<text x="${left - 6}" y="${top + r * ch + ch / 2}" font-size="11" text-anchor="end" dominant-baseline="middle">${esc(l)}</text>`);
    colLabels.forEach((_, c) => {
      const x = cell(r, c);
      const text = x.text ?? (x.value === null ? '—' : pct(x.value));
      const dark = x.value !== null && Math.abs(x.value) > 0.6;
      parts.push(
        `<rect x="${left + c * cw}" y="${top + r * ch}" width="${cw - 2}" height="${ch - 2}" fill="${colour(x.value)}"><title>${esc(x.title ?? text)}</title></rect>` +
          `<text x="${left + c * cw + (cw - 2) / 2}" y="${top + r * ch + (ch - 2) / 2}" font-size="10" text-anchor="middle" dominant-baseline="middle" fill="${dark ? '#fff' : '#111'}">${text}</text>`,
      );
    });
  });
  parts.push('</svg>');
  return parts.join('');
}

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#111;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:14px;margin:16px 0 4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
.legend{font-size:12px;margin:6px 0}.key{margin-right:14px}.key i{display:inline-block;width:10px;height:10px;margin-right:4px}
.muted{color:#666;font-size:12px}code{font-size:12px}svg.chart{display:block;margin:6px 0}`;

function page(title: string, body: string[]): string {
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head><body>\n<h1>${esc(title)}</h1>\n${body.join('\n')}\n</body></html>\n`;
}

/** The trace sections: logit-lens heatmap and early decodes of sample questions, the ablation effect matrix. */
function traceSections(traces: TraceRecord[], samples: number): string[] {
  const out: string[] = [];
  const steps = Math.max(0, ...traces.map((t) => t.steps.length));
  const kinds = [...new Set(traces.flatMap((t) => Object.keys(t.ablations)))] as ('zero' | 'skip' | 'noise')[];
  if (kinds.length && steps > 1) {
    out.push('<h2>Ablation effect (step × ablation kind)</h2>', `<p class="muted">Share of the ${traces.length} questions whose answer changes when latent step k is ablated.</p>`);
    const nSteps = steps - 1;
    out.push(
      heatmap(
        Array.from({ length: nSteps }, (_, k) => `latent ${k}`),
        kinds,
        (r, c) => {
          let n = 0;
          let changed = 0;
          for (const t of traces) {
            const a = t.ablations[kinds[c]]?.find((x) => x.step === r);
            if (!a) continue;
            n++;
            if (answerKey(a.answer) !== answerKey(t.answer)) changed++;
          }
          return { value: n ? changed / n : null, title: `${changed} of ${n} answers change` };
        },
      ),
    );
  }
  const shown = traces.slice(0, samples);
  if (shown.length) out.push('<h2>Logit lens and early decoding of sample questions</h2>', '<p class="muted">Rows: the bot position (h0) and each latent step; cells: the head’s top tokens at the last layer, shaded by probability. Early decode: the answer when decoding starts after k latent steps.</p>');
  for (const t of shown) {
    out.push(`<h3>${esc(t.id)}: ${esc(t.question ?? '')}</h3><p class="muted">answer ${tok(t.answer)}${t.gold ? `; gold ${esc(answerKey(t.gold))}` : ''}</p>`);
    const k = Math.min(5, Math.max(1, ...t.steps.map((s) => s.top_k.length)));
    out.push(
      heatmap(
        t.steps.map((s) => (s.step === 0 ? 'h0 (bot)' : `latent ${s.step - 1}`)),
        Array.from({ length: k }, (_, i) => `top ${i + 1}`),
        (r, c) => {
          const x = t.steps[r].top_k[c];
          return x ? { value: x.prob, text: tok(x.token).slice(0, 12), title: `${x.token} ${pct(x.prob)}` } : { value: null };
        },
      ),
    );
    if (t.early_decodes.length)
      out.push(`<table><tr><th>latents</th>${t.early_decodes.map((d) => `<td>${d.latents}</td>`).join('')}</tr><tr><th>answer</th>${t.early_decodes.map((d) => `<td>${tok(d.answer)}</td>`).join('')}</tr></table>`);
  }
  return out;
}

function instrumentSections(ins: InstrumentsResult | null): string[] {
  if (!ins) return [];
  const out: string[] = [];
  if (ins.patch.length) {
    const points = ins.patch[0].points;
    const rows = Math.max(...ins.patch.map((p) => p.recovered.length));
    out.push(
      '<h2>Causal map (activation patching)</h2>',
      `<p class="muted">The clean run's state at (latent step, point) patched into the run with the first number raised by one; the recovered share of the clean answer's probability, averaged over ${ins.patch.length} pairs (pairs whose answers agree are left out).</p>`,
      heatmap(
        Array.from({ length: rows }, (_, k) => `latent ${k}`),
        points,
        (r, c) => {
          const vs = ins.patch.map((p) => p.recovered[r]?.[c]).filter((v): v is number => typeof v === 'number');
          return { value: vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : null, title: `${vs.length} pairs` };
        },
        diverge,
      ),
      `<table><tr><th>clean</th><th>answer</th><th>corrupted</th><th>answer</th></tr>${ins.patch.map((p) => `<tr><td>${esc(p.clean)}</td><td>${tok(p.cleanAnswer)}</td><td>${esc(p.corrupted)}</td><td>${tok(p.corruptedAnswer)}</td></tr>`).join('')}</table>`,
    );
  }
  if (ins.inversion.length) {
    out.push('<h2>Latent inversion</h2>', '<p class="muted">For each latent step, the texts (appended to the question) whose state is closest in cosine to the latent state.</p>');
    for (const q of ins.inversion) {
      out.push(`<h3>${esc(q.record)} (${esc(q.point)}): ${esc(q.question)}</h3><table><tr><th>step</th><th>best texts (cosine)</th></tr>`);
      for (const s of q.steps) out.push(`<tr><td>${s.step}</td><td>${s.candidates.map((c) => `${tok(c.text)} (${c.cosine.toFixed(3)})`).join('<br>')}</td></tr>`);
      out.push('</table>');
    }
  }
  return out;
}

/** The pipeline's report.html. */
export function studyHtml(r: PipelineReport, traces: TraceRecord[], instruments: InstrumentsResult | null): string {
  const body: string[] = [
    `<p>Model <code>${esc(r.model)}</code>; layers ${r.layers.join(', ')}; questions train/val/test ${r.questions.train}/${r.questions.val}/${r.questions.test}; ${r.training.steps} training steps on ${r.training.trainExamples} examples.</p>`,
    '<h2>Accuracy per task</h2>',
    '<p class="muted">Exact match on the test split; the black lines are 95% bootstrap intervals. A task is marked “reads” when the oracle’s interval lies above the no-vector and shuffled intervals.</p>',
  ];
  const rows = Object.entries(r.tasks)
    .filter(([, t]) => t.eval)
    .map(([name, t]) => ({
      label: `${name}${t.groundTruth ? ' (gt)' : ''}${t.eval!.readsVectors ? ' ✓' : ''}`,
      scores: [t.eval!.oracle, t.eval!.noVectors, t.eval!.shuffled, t.eval!.logitLens, t.eval!.questionOnly, t.eval!.probe],
    }));
  if (rows.length) body.push(barChart(rows));
  const stepCells = r.probe.filter((x) => x.step !== null);
  if (stepCells.length) {
    const layers = [...new Set(stepCells.map((x) => x.layer))].sort((a, b) => a - b);
    const keys = [...new Set(stepCells.map((x) => `${x.task}\u0000${x.step}`))];
    body.push(
      '<h2>Linear probe (step × layer)</h2>',
      "<p class=\"muted\">Test accuracy of a ridge probe fitted on the training split's labels; the title of a cell gives the majority-class rate.</p>",
      heatmap(
        keys.map((k) => `${k.split('\u0000')[0]} step ${Number(k.split('\u0000')[1]) + 1}`),
        layers.map((l) => `L${l}`),
        (ri, ci) => {
          const [task, step] = keys[ri].split('\u0000');
          const x = stepCells.find((y) => y.task === task && String(y.step) === step && y.layer === layers[ci]);
          return x ? { value: x.correct / x.test, title: `${x.correct}/${x.test}; majority ${pct(x.majority / x.test)}` } : { value: null };
        },
      ),
    );
  }
  if (r.seedFailure.length)
    body.push(
      "<h2>The seed's failure</h2>",
      `<table><tr><th>question</th><th>n</th><th>names the step's value</th><th>names the final answer</th></tr>${r.seedFailure
        .map((f) => `<tr><td>${f.asked === 'thinking' ? 'What is the model thinking about?' : 'What does this step compute?'}</td><td>${f.n}</td><td>${pct(f.intermediate / f.n)}</td><td>${pct(f.final / f.n)}</td></tr>`)
        .join('')}</table>`,
    );
  if (r.variants.length) {
    const names = Object.keys(r.tasks).filter((t) => r.variants.some((v) => v.scores[t]));
    body.push(
      '<h2>Recipe ablations</h2>',
      '<p class="muted">Oracle exact match per test task for each variant of the recipe.</p>',
      heatmap(
        r.variants.map((v) => v.name),
        [...names, 'all'],
        (ri, ci) => {
          const v = r.variants[ri];
          const s = ci < names.length ? v.scores[names[ci]] : v.overall;
          return { value: s?.accuracy ?? null, title: s?.ci95 ? `${pct(s.accuracy)} [${pct(s.ci95[0])}, ${pct(s.ci95[1])}] of ${s.n}` : undefined };
        },
      ),
    );
  }
  body.push(...traceSections(traces, 3), ...instrumentSections(instruments));
  return page('Oracle study report', body);
}

/** `lro-native report traces.jsonl --out trace.html`: the trace sections for any trace file. */
export function traceHtml(traces: TraceRecord[], title: string, samples = 5): string {
  const answered = traces.filter((t) => t.gold);
  const right = answered.filter((t) => {
    const g = lastNumber(t.gold!);
    return g !== null && isCorrect(t.answer, g);
  }).length;
  const body = [`<p>${traces.length} questions${answered.length ? `; ${right} of ${answered.length} answered as the gold answer` : ''}.</p>`, ...traceSections(traces, samples)];
  return page(title, body);
}
