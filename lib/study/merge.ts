// `merge`: the outputs of a sharded run (trace / eval files, capture folders, eval-oracle predictions), joined into what one
// machine would have written with the same settings: records in data order, one manifest. Parts
// that do not belong together (other settings or inputs, a missing or repeated shard, a shard that
// did not finish, a record in two parts) are refused, naming them.
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { MANIFEST_FILE, readCaptureManifest, writeCaptureManifest, type CaptureManifest } from '../capture/capture-manifest.js';
import { InputError } from '../core/errors.js';
import { readShardInfo, shardInfoPath, type ShardInfo } from '../core/shard.js';
import { shardFileName } from '../capture/shard-writer.js';
import { EXTRA_DIR, EXTRA_SETTINGS_FILE, FACTS_FILE } from '../tasks/extras.js';
import { readTraceFile, shapeOf, type TraceLine } from '../capture/trace.js';

export interface MergeOptions {
  /** The merged file (trace, eval) or folder (capture). */
  out: string;
  /** Replace an existing merged output. */
  overwrite?: boolean;
}

export interface MergeSummary {
  kind: 'trace' | 'eval' | 'capture' | 'eval-oracle' | 'make-tasks';
  out: string;
  shards: number;
  records: number;
}

interface Part {
  path: string;
  folder: boolean;
  info: ShardInfo;
}

async function isFolder(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() ?? false;
}

async function readParts(paths: readonly string[]): Promise<Part[]> {
  if (paths.length === 0) throw new InputError('merge: give the shard outputs to join (e.g. traces.shard-*-of-4.jsonl)');
  const parts: Part[] = [];
  for (const path of paths) {
    if (!existsSync(path)) throw new InputError(`merge: ${path} not found`);
    const folder = await isFolder(path);
    const infoPath = shardInfoPath(path, folder ? 'folder' : 'file');
    const info = await readShardInfo(infoPath);
    if (!info) throw new InputError(`merge: ${path} is not a shard's output (no ${infoPath}); merge joins the outputs of runs made with --shard`);
    parts.push({ path, folder, info });
  }
  const first = parts[0];
  for (const p of parts) {
    if (p.info.command !== first.info.command || p.folder !== first.folder) throw new InputError(`merge: ${p.path} is ${p.info.command} ${p.folder ? 'capture' : 'file'} output, ${first.path} is ${first.info.command} ${first.folder ? 'capture' : 'file'} output; merge one kind at a time`);
    if (p.info.count !== first.info.count)
      throw new InputError(`merge: ${p.path} is shard ${p.info.index} of ${p.info.count}, ${first.path} shard ${first.info.index} of ${first.info.count}; the shards of one run share their count`);
  }
  const byIndex = new Map<number, Part>();
  for (const p of parts) {
    const twin = byIndex.get(p.info.index);
    if (twin) throw new InputError(`merge: shard ${p.info.index}/${p.info.count} is given twice: ${twin.path} and ${p.path}`);
    byIndex.set(p.info.index, p);
  }
  const missing = [...Array(first.info.count).keys()].filter((i) => !byIndex.has(i));
  if (missing.length)
    throw new InputError(
      `merge: missing shard${missing.length > 1 ? 's' : ''} ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''} of ${first.info.count}; give every shard's output (run the missing ones first)`,
    );
  for (const p of parts)
    if (!p.info.complete) throw new InputError(`merge: shard ${p.info.index}/${p.info.count} (${p.path}) did not finish; rerun it with the same command (it continues), then merge`);
  const owner = new Map<string, Part>();
  const positions = new Map<number, string>();
  for (const p of parts)
    for (const r of p.info.records) {
      const o = owner.get(r.id);
      if (o) throw new InputError(`merge: record "${r.id}" is in two parts: ${o.path} and ${p.path}; these shards do not come from one partition of one data file`);
      owner.set(r.id, p);
      const at = positions.get(r.position);
      if (at !== undefined) throw new InputError(`merge: records "${at}" and "${r.id}" both claim position ${r.position} of the data; the parts come from different data`);
      positions.set(r.position, r.id);
    }
  return parts.sort((a, b) => a.info.index - b.info.index);
}

/** The first difference between two parts' identities, as "key: A there, B here". */
function firstDifference(a: Record<string, unknown>, b: Record<string, unknown>): string | null {
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const [x, y] = [JSON.stringify(a[k]), JSON.stringify(b[k])];
    if (x !== y) return `${k} is ${x} in one, ${y} in the other`;
  }
  return null;
}

function sameIdentity(parts: Part[], identity: (p: Part) => Record<string, unknown>): void {
  const base = identity(parts[0]);
  for (const p of parts.slice(1)) {
    const diff = firstDifference(base, identity(p));
    if (diff) throw new InputError(`merge: ${parts[0].path} and ${p.path} were made with other settings or inputs (${diff}); merge only the shards of one run`);
  }
}

/** Records of all parts in data order, each with its part. */
function dataOrder(parts: Part[]): { id: string; part: Part }[] {
  return parts
    .flatMap((part) => part.info.records.map((r) => ({ id: r.id, position: r.position, part })))
    .sort((a, b) => a.position - b.position)
    .map(({ id, part }) => ({ id, part }));
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`merge: cannot read ${path} (${(e as Error).message})`);
  }
}

async function mergeTraces(parts: Part[], o: MergeOptions): Promise<MergeSummary> {
  if (existsSync(o.out) && !o.overwrite) throw new InputError(`merge: ${o.out} exists; pass --overwrite to replace it, or choose another --out`);
  const settings = new Map<Part, Record<string, unknown>>();
  const lines = new Map<string, string>();
  const shapes = new Map<Part, string | null>();
  for (const p of parts) {
    const { shard: _shard, ...rest } = await readJson(`${p.path}.settings.json`);
    settings.set(p, rest);
    let first: TraceLine | null = null;
    const state = await readTraceFile(p.path, (line) => {
      first ??= line;
      lines.set(line.id, JSON.stringify(line));
    });
    if (state.truncatedBytes) throw new InputError(`merge: ${p.path} ends in a cut-off line; rerun its shard to finish it`);
    const listed = new Set(p.info.records.map((r) => r.id));
    for (const id of state.ids) if (!listed.has(id)) throw new InputError(`merge: ${p.path} holds record "${id}", which its shard file does not list; rerun the shard`);
    if (state.ids.size !== listed.size) throw new InputError(`merge: ${p.path} holds ${state.ids.size} records, its shard file lists ${listed.size}; rerun the shard`);
    shapes.set(p, first ? JSON.stringify(shapeOf(first)) : null);
  }
  sameIdentity(parts, (p) => settings.get(p)!);
  const withLines = parts.filter((p) => shapes.get(p) !== null);
  sameIdentity(withLines, (p) => ({ lines: shapes.get(p) }));
  // Lines as the parts wrote them (the same bytes: JSON.stringify of a parsed line gives them back).
  const body = dataOrder(parts).map(({ id }) => lines.get(id)! + '\n').join('');
  await writeFileAtomic(o.out, body);
  await writeFileAtomic(`${o.out}.settings.json`, JSON.stringify(settings.get(parts[0]), null, 1) + '\n');
  await rm(shardInfoPath(o.out, 'file'), { force: true });
  return { kind: parts[0].info.command as 'trace' | 'eval', out: o.out, shards: parts.length, records: lines.size };
}

async function mergePredictions(parts: Part[], o: MergeOptions): Promise<MergeSummary> {
  if (existsSync(o.out) && !o.overwrite) throw new InputError(`merge: ${o.out} exists; pass --overwrite to replace it, or choose another --out`);
  const headers = new Map<Part, Record<string, unknown>>();
  const lines = new Map<string, string>();
  for (const p of parts) {
    const text = (await readFile(p.path, 'utf8')).split('\n').filter((l) => l.trim() !== '');
    let header: { format?: unknown; identity?: Record<string, unknown> };
    try {
      header = JSON.parse(text[0] ?? '') as typeof header;
    } catch {
      throw new InputError(`merge: ${p.path}:1 is not an oracle predictions header`);
    }
    if (header.format !== 'lro-oracle-predictions' || typeof header.identity !== 'object') throw new InputError(`merge: ${p.path}:1 is not an oracle predictions header`);
    headers.set(p, header.identity);
    const listed = new Set(p.info.records.map((r) => r.id));
    let count = 0;
    for (const [i, l] of text.slice(1).entries()) {
      let id: unknown;
      try {
        id = (JSON.parse(l) as { id?: unknown }).id;
      } catch {
        throw new InputError(`merge: ${p.path}:${i + 2} is not valid JSON; rerun its shard with --resume`);
      }
      if (typeof id !== 'string' || !listed.has(id)) throw new InputError(`merge: ${p.path}:${i + 2}: example ${JSON.stringify(id)} is not listed in its shard file; rerun the shard with --resume`);
      lines.set(id, l);
      count++;
    }
    if (count !== listed.size) throw new InputError(`merge: ${p.path} holds ${count} answers, its shard file lists ${listed.size}; rerun the shard with --resume`);
  }
  sameIdentity(parts, (p) => headers.get(p)!);
  const body = [JSON.stringify({ format: 'lro-oracle-predictions', identity: headers.get(parts[0]) }), ...dataOrder(parts).map(({ id }) => lines.get(id)!)].map((l) => l + '\n').join('');
  await writeFileAtomic(o.out, body);
  return { kind: 'eval-oracle', out: o.out, shards: parts.length, records: lines.size };
}

function captureIdentity(m: CaptureManifest): Record<string, unknown> {
  // The latent head is compared by its hash (inputs) where the manifest has one, as a resume does.
  const settings = m.inputs && m.settings.reasoning ? { ...m.settings, reasoning: { ...m.settings.reasoning, latentHead: '' } } : m.settings;
  const { path: _path, relative: _relative, ...model } = m.model;
  return { model: m.model.sha256 ? { sha256: m.model.sha256 } : model, inputs: m.inputs ?? null, settings, format: m.format, version: m.version };
}

async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    // Another file system: one copy, then the source goes (a file is never in both places for long).
    await copyFile(from, to);
    await rm(from);
  }
}

interface CaptureSource {
  dir: string;
  manifest: CaptureManifest;
}

/**
 * Moves the shard files of several capture folders into one (each file once, to a number of its
 * own; the plan is the same on a rerun, so a move interrupted half-way continues) and writes its
 * manifest with the records in the given order.
 */
async function joinCaptures(sources: CaptureSource[], out: string, order: readonly string[], overwrite: boolean): Promise<CaptureManifest> {
  const plan: { from: string; to: string; source: CaptureSource; file: string }[] = [];
  for (const src of sources) for (const s of src.manifest.shards) plan.push({ from: join(src.dir, s.file), to: join(out, shardFileName(plan.length)), source: src, file: s.file });
  if (existsSync(join(out, MANIFEST_FILE))) {
    if (!overwrite) throw new InputError(`merge: ${out} already holds a capture; pass --overwrite to replace it, or choose another --out`);
    const moved = plan.find((x) => !existsSync(x.from));
    if (moved) throw new InputError(`merge: ${moved.from} was moved into ${out} by an earlier merge; that merge is the result (remove it by hand to merge again)`);
    await rm(out, { recursive: true, force: true });
  } else if (existsSync(out)) {
    const planned = new Set(plan.map((x) => resolve(x.to)));
    const stray = (await readdir(out)).find((f) => !planned.has(resolve(join(out, f))));
    if (stray) throw new InputError(`merge: ${out} exists and holds ${stray}; merge into a new folder`);
  }
  await mkdir(out, { recursive: true });
  for (const x of plan) {
    if (existsSync(x.from)) await moveFile(x.from, x.to);
    else if (!existsSync(x.to)) throw new InputError(`merge: ${x.from} is missing (and not in ${out} either)`);
  }
  const newName = new Map(plan.map((x) => [`${x.source.dir}\0${x.file}`, x.to.slice(join(out, '/').length)]));
  const named = (src: CaptureSource, file: string) => newName.get(`${src.dir}\0${file}`)!;
  const recordOf = new Map<string, CaptureManifest['records'][number]>();
  for (const src of sources)
    for (const r of src.manifest.records) {
      const tensors = Object.fromEntries(Object.entries(r.tensors).map(([k, t]) => [k, { ...t, file: named(src, t.file) }]));
      recordOf.set(r.id, { ...r, tensors });
    }
  const first = sources[0].manifest;
  const merged: CaptureManifest = {
    ...first,
    createdAt: sources.map((x) => x.manifest.createdAt).sort()[0],
    updatedAt: new Date().toISOString(),
    complete: true,
    model: { ...first.model, relative: relative(resolve(out), resolve(first.model.path)) },
    shards: sources.flatMap((src) => src.manifest.shards.map((s) => ({ ...s, file: named(src, s.file) }))),
    records: order.map((id) => recordOf.get(id)!),
  };
  await writeCaptureManifest(out, merged);
  for (const src of sources) await rm(join(src.dir, MANIFEST_FILE), { force: true });
  return merged;
}

async function mergeCaptures(parts: Part[], o: MergeOptions): Promise<MergeSummary> {
  const manifests = new Map<Part, CaptureManifest>();
  for (const p of parts) {
    const m = await readCaptureManifest(p.path);
    if (!m.complete) throw new InputError(`merge: ${join(p.path, MANIFEST_FILE)} is not complete; rerun its shard with --resume, then merge`);
    const listed = new Set(p.info.records.map((r) => r.id));
    if (m.records.length !== listed.size || m.records.some((r) => !listed.has(r.id)))
      throw new InputError(`merge: ${join(p.path, MANIFEST_FILE)} and its shard file list other records; rerun the shard with --resume`);
    manifests.set(p, m);
  }
  sameIdentity(parts, (p) => captureIdentity(manifests.get(p)!));
  const merged = await joinCaptures(
    parts.map((p) => ({ dir: p.path, manifest: manifests.get(p)! })),
    o.out,
    dataOrder(parts).map((r) => r.id),
    o.overwrite ?? false,
  );
  // The parts gave their files to the merged folder; what is left of them goes.
  for (const p of parts) {
    await rm(shardInfoPath(p.path, 'folder'), { force: true });
    await rmdir(p.path).catch(() => undefined);
  }
  return { kind: 'capture', out: o.out, shards: parts.length, records: merged.records.length };
}

/**
 * make-tasks shards: their extra runs (OUT/extra: a capture folder, facts.jsonl, settings.json)
 * joined into one folder with the run.json they share. make-tasks on it, without --shard, finds
 * every extra run done and writes the splits.
 */
async function mergeTaskExtras(parts: Part[], o: MergeOptions): Promise<MergeSummary> {
  const runs = new Map<Part, Record<string, unknown>>();
  for (const p of parts) runs.set(p, await readJson(join(p.path, 'run.json')));
  sameIdentity(parts, (p) => ({ format: runs.get(p)!.format, identity: runs.get(p)!.identity }));
  if (existsSync(join(o.out, 'run.json')) && !o.overwrite) throw new InputError(`merge: ${o.out} already holds tasks; pass --overwrite to replace them, or choose another --out`);
  const withExtras = parts.filter((p) => existsSync(join(p.path, EXTRA_DIR, MANIFEST_FILE)));
  const questionOrder = dataOrder(parts);
  const position = new Map(questionOrder.map((q, i) => [q.id, i]));
  await mkdir(o.out, { recursive: true });
  if (withExtras.length) {
    const settings = new Map<Part, Record<string, unknown>>();
    for (const p of withExtras) settings.set(p, await readJson(join(p.path, EXTRA_DIR, EXTRA_SETTINGS_FILE)));
    sameIdentity(withExtras, (p) => settings.get(p)!);
    const sources: CaptureSource[] = [];
    const facts: { question: string; line: string; n: number }[] = [];
    for (const p of withExtras) {
      const dir = join(p.path, EXTRA_DIR);
      const manifest = await readCaptureManifest(dir);
      if (!manifest.complete) throw new InputError(`merge: ${join(dir, MANIFEST_FILE)} is not complete; rerun that make-tasks shard, then merge`);
      sources.push({ dir, manifest });
      for (const line of (await readFile(join(dir, FACTS_FILE), 'utf8')).split('\n')) {
        if (line.trim() === '') continue;
        let id: unknown;
        try {
          id = (JSON.parse(line) as { id?: unknown }).id;
        } catch {
          continue; // a line cut off by a crash: make-tasks redoes that question
        }
        if (typeof id === 'string' && position.has(id)) facts.push({ question: id, line, n: facts.length });
      }
    }
    // Extra records are named "<question id>~kind": they follow their question's place in the data.
    const records = sources.flatMap((src) => src.manifest.records.map((r, n) => ({ id: r.id, question: r.id.slice(0, r.id.lastIndexOf('~')), n })));
    const at = (q: string) => position.get(q) ?? Number.MAX_SAFE_INTEGER;
    records.sort((a, b) => at(a.question) - at(b.question) || a.n - b.n);
    facts.sort((a, b) => at(a.question) - at(b.question) || a.n - b.n);
    const dir = join(o.out, EXTRA_DIR);
    await joinCaptures(sources, dir, records.map((r) => r.id), o.overwrite ?? false);
    await writeFileAtomic(join(dir, FACTS_FILE), facts.map((f) => f.line + '\n').join(''));
    await writeFileAtomic(join(dir, EXTRA_SETTINGS_FILE), JSON.stringify(settings.get(withExtras[0]), null, 1) + '\n');
  }
  await writeFileAtomic(join(o.out, 'run.json'), JSON.stringify(runs.get(parts[0]), null, 1) + '\n');
  for (const p of parts) {
    for (const f of [join(EXTRA_DIR, FACTS_FILE), join(EXTRA_DIR, EXTRA_SETTINGS_FILE), 'run.json', 'shard.json']) await rm(join(p.path, f), { force: true });
    await rmdir(join(p.path, EXTRA_DIR)).catch(() => undefined);
    await rmdir(p.path).catch(() => undefined);
  }
  return { kind: 'make-tasks', out: o.out, shards: parts.length, records: questionOrder.length };
}

/** Joins the outputs of every shard of one run (see lib/core/shard.ts) into options.out. */
export async function mergeShards(paths: readonly string[], options: MergeOptions): Promise<MergeSummary> {
  const parts = await readParts(paths);
  if (parts.some((p) => resolve(p.path) === resolve(options.out))) throw new InputError(`merge: --out ${options.out} is one of the parts; choose another`);
  if (parts[0].folder) return parts[0].info.command === 'make-tasks' ? mergeTaskExtras(parts, options) : mergeCaptures(parts, options);
  return parts[0].info.command === 'eval-oracle' ? mergePredictions(parts, options) : mergeTraces(parts, options);
}
