// A real browser for the HTML reports: headless Chromium (Debian's chromium, which .ci/run
// installs) loads a page with a probe script appended, which writes every SVG's rendered size
// into the DOM; --dump-dom returns it, and the browser's log carries every console message (an
// error or a failed script shows up there). A second run saves a screenshot.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export function findChromium(): string | null {
  for (const p of [process.env.LRO_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) if (p && existsSync(p)) return p;
  return null;
}

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars', '--no-first-run', '--disable-extensions'];
const DONE = 'lro-render-check-done';
const PROBE = `<script>addEventListener('load',()=>{const s=[...document.querySelectorAll('svg')].map(e=>{const b=e.getBoundingClientRect();return{w:b.width,h:b.height,shapes:e.querySelectorAll('rect,line,path,circle').length}});const p=document.createElement('pre');p.id='lro-render-check';p.textContent=JSON.stringify(s);document.body.appendChild(p);console.log('${DONE}')});</script>`;

export interface RenderCheck {
  svgs: { w: number; h: number; shapes: number }[];
  /** Console messages other than the probe's own (errors, uncaught exceptions, warnings). */
  console: string[];
  screenshot: string;
  /** Requests the page tried to make to the network (it must make none). */
  network: string[];
}

/** Renders html (a file) in Chromium; the probe copy goes to html + '.check.html', the screenshot to png. */
export async function renderInChromium(chromium: string, html: string, png: string): Promise<RenderCheck> {
  const probe = html + '.check.html';
  copyFileSync(html, probe);
  writeFileSync(probe, readFileSync(probe, 'utf8').replace('</body>', `${PROBE}</body>`));
  const dom = await run(chromium, [...FLAGS, '--enable-logging=stderr', '--v=0', '--virtual-time-budget=5000', '--dump-dom', `file://${probe}`], { timeout: 90_000, maxBuffer: 64 << 20 });
  const m = /<pre id="lro-render-check">([^<]*)<\/pre>/.exec(dom.stdout);
  if (!m) throw new Error(`the page did not finish loading in Chromium:\n${dom.stderr.slice(-2000)}`);
  const consoleLines = dom.stderr.split('\n').filter((l) => /:CONSOLE/.test(l) && !l.includes(DONE));
  const network = dom.stderr.split('\n').filter((l) => /https?:\/\//.test(l) && /net::|request/i.test(l));
  await run(chromium, [...FLAGS, '--window-size=1200,2400', `--screenshot=${png}`, `file://${html}`], { timeout: 90_000 });
  return { svgs: JSON.parse(m[1].replace(/&quot;/g, '"')) as RenderCheck['svgs'], console: consoleLines, screenshot: png, network };
}
