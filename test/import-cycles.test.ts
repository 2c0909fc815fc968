// lib/ and bin/ import in one direction only: no module of the compiled package imports itself
// through others (node would hand a half-initialised module to one side of the cycle).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from './helpers/paths.js';

function sourceFiles(dir: string, ext: '.js' | '.ts'): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sourceFiles(p, ext) : p.endsWith(ext) && !p.endsWith('.d.ts') ? [p] : [];
  });
}

// ext '.ts': the sources, type-only imports included (they import './x.js', meaning x.ts).
function cycles(root: string, dirs: string[], ext: '.js' | '.ts'): string[][] {
  const files = dirs.flatMap((d) => sourceFiles(join(root, d), ext));
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    const deps = [...src.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s+['"](\.[^'"]+)['"]/g)].map((m) =>
      resolve(dirname(f), ext === '.ts' ? m[1].replace(/\.js$/, '.ts') : m[1]),
    );
    graph.set(f, deps.filter((d) => known.has(d)));
  }
  const state = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (n: string) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 1) found.push([...stack.slice(stack.indexOf(m)), m].map((x) => relative(root, x)));
      else if (!state.get(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const f of files) if (!state.get(f)) visit(f);
  return found;
}

// lib/'s folders, lowest first: a module imports from its own folder or lower ones only
// (tasks and organism stand side by side).
const LAYERS: string[][] = [['core'], ['engine'], ['reasoning'], ['capture'], ['training'], ['oracle'], ['tasks', 'organism'], ['study']];
const layerOf = (folder: string) => LAYERS.findIndex((l) => l.includes(folder));

function upwardImports(): string[] {
  const lib = join(projectRoot, 'lib');
  const found: string[] = [];
  for (const f of sourceFiles(lib, '.ts')) {
    const from = relative(lib, f).split('/');
    if (from.length < 2) continue; // lib/index.ts gathers everything
    for (const m of readFileSync(f, 'utf8').matchAll(/\bfrom\s+['"](\.[^'"]+)['"]/g)) {
      const to = relative(lib, resolve(dirname(f), m[1])).split('/');
      if (to.length >= 2 && layerOf(to[0]) > layerOf(from[0])) found.push(`${from.join('/')} -> ${to.join('/')}`);
    }
  }
  return found;
}

describe('module graph', () => {
  it("every folder of lib/ is in the layer table, and none imports from a layer above it", () => {
    const folders = readdirSync(join(projectRoot, 'lib')).filter((e) => statSync(join(projectRoot, 'lib', e)).isDirectory());
    expect(folders.filter((f) => layerOf(f) < 0)).toEqual([]);
    expect(upwardImports()).toEqual([]);
  });
  it('has no import cycle in the compiled lib/ and bin/', () => {
    expect(cycles(join(projectRoot, 'dist'), ['lib', 'bin'], '.js')).toEqual([]);
  });
  it('has none in the sources either, type-only imports included', () => {
    expect(cycles(projectRoot, ['lib', 'bin'], '.ts')).toEqual([]);
  });
});
