// Hugging Face -> GGUF conversion (llama.cpp layout), CODI merges and sidecars, LoRA adapters
// both ways, and the readers' refusals. Golden data: shared/golden (README §3-4, hf/README.md).
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { convertAdapter, convertHf, type ConvertProgress } from '../lib/engine/convert.js';
import { InputError } from '../lib/core/errors.js';
import { LatentHead } from '../lib/reasoning/latent-head.js';
import { loadModel } from '../lib/engine/model.js';
import { fmt, maxAbsDiff } from './helpers/compare.js';
import { readGgufTable } from './helpers/gguf.js';
import { golden } from './helpers/paths.js';
import { f32, i64, readSt } from './helpers/safetensors.js';
import { runConvertCommand } from './helpers/convert-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-convert-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(report.join('\n'));
});

/** name -> [type, ne, bytes] of every tensor; equal maps mean identical tensors. */
function tensorMap(path: string): Map<string, { type: number; ne: string; bytes: Buffer }> {
  const t = readGgufTable(path);
  const out = new Map<string, { type: number; ne: string; bytes: Buffer }>();
  const sizes: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 30: [1, 2], 8: [32, 34] };
  for (const [name, r] of t.tensors) {
    const n = r.ne.reduce((a, b) => a * b, 1);
    const [bs, bb] = sizes[r.type];
    out.set(name, { type: r.type, ne: r.ne.join(','), bytes: t.bytes.subarray(r.start, r.start + (n / bs) * bb) });
  }
  return out;
}

function expectSameTensors(a: string, b: string): void {
  const x = tensorMap(a);
  const y = tensorMap(b);
  expect([...x.keys()].sort()).toEqual([...y.keys()].sort());
  for (const [name, t] of x) {
    const u = y.get(name)!;
    expect({ name, type: t.type, ne: t.ne }).toEqual({ name, type: u.type, ne: u.ne });
    expect(Buffer.compare(t.bytes, u.bytes), `tensor ${name} bytes`).toBe(0);
  }
}

// --- a stored zip and pickles built by hand (no Python, no torch)

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function storedZip(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let off = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(n.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(n.length, 28);
    cd.writeUInt32LE(off, 42);
    parts.push(lh, n, data);
    central.push(cd, n);
    off += 30 + n.length + data.length;
  }
  const cdBuf = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cdBuf.length, 12);
  eocd.writeUInt32LE(off, 16);
  return Buffer.concat([...parts, cdBuf, eocd]);
}

const X = (s: string) => {
  const b = Buffer.from(s);
  const n = Buffer.alloc(4);
  n.writeUInt32LE(b.length);
  return Buffer.concat([Buffer.from('X'), n, b]);
};
const raw = (s: string) => Buffer.from(s, 'latin1');

/** A folder whose config/tokenizer are tiny-llama3's and whose weights are `weights`. */
function fakeModelDir(name: string, weightsName: string, weights: Buffer): string {
  const d = join(tmp, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(golden('hf', 'tiny-llama3', f), join(d, f));
  writeFileSync(join(d, weightsName), weights);
  return d;
}


describe('convert: Hugging Face folder -> GGUF', () => {
  test('tiny-llama3 --type f32 is byte-identical to llama.cpp\'s tiny-l3.f32.gguf', async () => {
    const out = join(tmp, 'tiny.f32.gguf');
    const progress: ConvertProgress[] = [];
    const s = await convertHf(golden('hf', 'tiny-llama3'), out, { onProgress: (p) => progress.push(p) });
    expect(s).toMatchObject({ tensors: 39, nVocab: 2003, tokenizerSize: 2000, tied: true, codi: false, pre: 'llama-bpe', latent: null });
    expect(Buffer.compare(readFileSync(out), readFileSync(golden('gguf', 'tiny-l3.f32.gguf')))).toBe(0);
    expect(progress.some((p) => p.stage === 'tensor')).toBe(true);
    expect(progress.at(-1)).toMatchObject({ done: progress.at(-1)!.total });

    const [a, b] = await Promise.all([loadModel(out, { vocabOnly: true }), loadModel(golden('gguf', 'tiny-l3.f32.gguf'), { vocabOnly: true })]);
    const tok = (m: Record<string, unknown>) => Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('tokenizer.')));
    expect(tok(a.metadata())).toEqual(tok(b.metadata()));
    expect(a.tokenize('Janet’s ducks lay 16 eggs')).toEqual(b.tokenize('Janet’s ducks lay 16 eggs'));
    a.dispose();
    b.dispose();
  });

  test.each(['f16', 'bf16', 'q8_0'] as const)('tiny-llama3 --type %s: tensors equal llama-quantize output', async (type) => {
    const out = join(tmp, `tiny.${type}.gguf`);
    await convertHf(golden('hf', 'tiny-llama3'), out, { type });
    expectSameTensors(out, golden('gguf', `tiny-l3.${type}.gguf`));
  });

  test('a throwing progress callback does not break the conversion', async () => {
    const out = join(tmp, 'throwing-progress.gguf');
    let calls = 0;
    const s = await convertHf(golden('hf', 'tiny-llama3'), out, {
      onProgress: () => {
        calls++;
        throw new Error('progress callback failure');
      },
    });
    expect(s.tensors).toBe(39);
    expect(calls).toBeGreaterThan(0);
  });

  test('options are validated before anything runs', async () => {
    await expect(convertHf(golden('hf', 'tiny-llama3'), join(tmp, 'x.gguf'), { type: 'q4_0' as never })).rejects.toThrow(/type/);
    await expect(convertHf(join(tmp, 'no-such-dir'), join(tmp, 'x.gguf'))).rejects.toBeInstanceOf(InputError);
    await expect(convertHf(golden('hf', 'tiny-llama3'), join(tmp, 'missing', 'x.gguf'))).rejects.toBeInstanceOf(InputError);
    await expect(convertHf(golden('hf', 'tiny-llama3'), join(tmp, 'x.gguf'), { loraAlpha: -1 })).rejects.toThrow(/loraAlpha/);
  });
});

describe('convert: CODI checkpoints', () => {
  const outs: Record<string, string> = {};

  test.each(['pytorch_model.bin', 'model.safetensors'])('codi-tiny from %s: LoRA merged, sidecar written', async (weights) => {
    const out = join(tmp, `codi.${weights}.gguf`);
    const s = await convertHf(golden('hf', 'codi-tiny'), out, { weights });
    outs[weights] = out;
    expect(s.codi).toBe(true);
    expect(s.sourceFormat).toBe(weights.endsWith('.bin') ? 'pytorch' : 'safetensors');
    expect(s.lora).toEqual({ merged: 28, rank: 16, alpha: 8, alphaSource: 'README.json', rslora: false, out: null });
    expect(s.latentOut).toBe(join(tmp, `codi.${weights}.latent.gguf`));
    expect(s.latent).toEqual({ mode: 'codi', botId: 2001, eotId: 2002, padId: 2000, steps: 6 });
    const sidecar = readGgufTable(s.latentOut!);
    expect([...sidecar.tensors.keys()].sort()).toEqual(
      ['latent.fc1.bias', 'latent.fc1.weight', 'latent.fc2.bias', 'latent.fc2.weight', 'latent.ln.bias', 'latent.ln.weight'].sort(),
    );
  });

  test('bf16 torch zip and f32 safetensors give the same merged model (identical inputs, same f32 arithmetic)', () => {
    expectSameTensors(outs['pytorch_model.bin'], outs['model.safetensors']);
    expect(Buffer.compare(readFileSync(outs['pytorch_model.bin'].replace(/\.gguf$/, '.latent.gguf')),
      readFileSync(outs['model.safetensors'].replace(/\.gguf$/, '.latent.gguf')))).toBe(0);
  });

  test('the converted model and its sidecar reproduce the CODI goldens (h_0, e_0 of question 0)', async () => {
    const g = readSt(golden('hf', 'codi-tiny.reasoning.safetensors'));
    const model = await loadModel(outs['model.safetensors']);
    try {
      const head = LatentHead.find(model)!;
      expect(head.settings).toMatchObject({ mode: 'codi', botId: 2001, eotId: 2002, padId: 2000, steps: 6, promptFormat: 'codi-answer-only' });
      expect(head.settings.excludeIds).toEqual([2000, 2001, 2002]);
      expect(model.metadata()['tokenizer.ggml.tokens']).toBeDefined();
      const ids = i64(g, 'q0.prompt_ids');
      const s = model.createSession({ nCtx: 256 });
      const out = await s.eval({ tokens: ids, finalNorm: true, logits: false });
      const h0 = out.finalNorm!;
      const gh = f32(g, 'q0.h').subarray(0, 256);
      const ge = f32(g, 'q0.e').subarray(0, 256);
      const dh = maxAbsDiff(h0, gh);
      const de = maxAbsDiff(head.project(h0), ge);
      report.push(`codi-tiny q0: max|h_0 - golden| ${fmt(dh)}, max|prj(h_0) - golden e_0| ${fmt(de)}`);
      expect(dh).toBeLessThan(1e-3);
      expect(de).toBeLessThan(1e-3);
      s.dispose();
    } finally {
      model.dispose();
    }
  });

  test('without a LoRA alpha the error says so and names the known value', async () => {
    const d = join(tmp, 'codi-noreadme');
    mkdirSync(d, { recursive: true });
    for (const f of ['base_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
      if (!existsSync(join(d, f))) symlinkSync(golden('hf', 'codi-tiny', f), join(d, f));
    await expect(convertHf(d, join(tmp, 'noalpha.gguf'))).rejects.toThrow(/no LoRA alpha.*--lora-alpha.*r 128, alpha 32/s);
    expect(existsSync(join(tmp, 'noalpha.gguf'))).toBe(false);
    const s = await convertHf(d, join(tmp, 'alpha8.gguf'), { loraAlpha: 8 });
    expect(s.lora.alphaSource).toBe('option');
    expectSameTensors(join(tmp, 'alpha8.gguf'), outs['model.safetensors']);
  });

  test('--latent coconut writes a sidecar without tensors', async () => {
    const s = await convertHf(golden('hf', 'codi-tiny'), join(tmp, 'coco.gguf'), { weights: 'model.safetensors', latent: 'coconut' });
    expect(s.latent?.mode).toBe('coconut');
    expect(readGgufTable(s.latentOut!).tensors.size).toBe(0);
  });
});

describe('convert: hostile and broken inputs', () => {
  test('a pickle naming os.system is refused before anything runs, naming the global', async () => {
    const od = raw('ccollections\nOrderedDict\n)R');
    const evil = Buffer.concat([raw('\x80\x02'), od, raw('('), X('w'), raw('cos\nsystem\n'), X('touch /tmp/pwned'), raw('\x85Ru.')]);
    const d = fakeModelDir('evil', 'pytorch_model.bin', storedZip([['archive/data.pkl', evil], ['archive/data/0', Buffer.alloc(16)]]));
    const out = join(tmp, 'evil.gguf');
    await expect(convertHf(d, out)).rejects.toThrow(/refusing global 'os\.system'.*nothing from this file was executed/s);
    expect(existsSync(out)).toBe(false);

    const stackGlobal = raw('\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x0bprint("hi")\x85R.');
    const d2 = fakeModelDir('evil2', 'pytorch_model.bin', storedZip([['archive/data.pkl', stackGlobal]]));
    await expect(convertHf(d2, out)).rejects.toThrow(/refusing global 'builtins\.eval'/);
  });

  test('a transposed (non-contiguous) torch tensor is gathered by its strides', async () => {
    // Not a whole model: the unknown tensor name stops the conversion after the weights were read,
    // so the message proves the strided pickle parsed. The values are checked in test_convert.
    const od = raw('ccollections\nOrderedDict\n)R');
    const rb = raw('ctorch._utils\n_rebuild_tensor_v2\n');
    const pid = Buffer.concat([raw('('), X('storage'), raw('ctorch\nFloatStorage\n'), X('0'), X('cpu'), raw('K\x06tQ')]);
    const pk = Buffer.concat([raw('\x80\x02'), od, raw('('), X('w'), rb, raw('('), pid, raw('K\x00K\x02K\x03\x86K\x01K\x02\x86\x89'), od, raw('tRu.')]);
    const d = fakeModelDir('strided', 'pytorch_model.bin', storedZip([['archive/data.pkl', pk], ['archive/data/0', Buffer.alloc(24)]]));
    await expect(convertHf(d, join(tmp, 'strided.gguf'))).rejects.toThrow(/not part of a Llama model: w/);
  });

  test('truncated torch zip, truncated safetensors and inconsistent headers give clear errors', async () => {
    const bin = readFileSync(golden('hf', 'codi-tiny', 'pytorch_model.bin'));
    const d1 = fakeModelDir('trunc-zip', 'pytorch_model.bin', bin.subarray(0, bin.length >> 1));
    await expect(convertHf(d1, join(tmp, 't.gguf'))).rejects.toThrow(/pytorch_model\.bin: zip end-of-central-directory record not found \(truncated/);

    const st = readFileSync(golden('hf', 'tiny-llama3', 'model.safetensors'));
    const d2 = fakeModelDir('trunc-st', 'model.safetensors', st.subarray(0, st.length - 4096));
    await expect(convertHf(d2, join(tmp, 't.gguf'))).rejects.toThrow(/model\.safetensors: header entry 'model\.layers\.3\.[a-z_.]+': data_offsets end \d+ is past the end of the data section.*truncated/s);

    const header = Buffer.from(JSON.stringify({ a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const d3 = fakeModelDir('bad-header', 'model.safetensors', Buffer.concat([len, header, Buffer.alloc(12)]));
    await expect(convertHf(d3, join(tmp, 't.gguf'))).rejects.toThrow(/header entry 'a': shape and dtype F32 give 16 bytes but data_offsets span 12/);
  });
});

describe('convert-adapter', () => {
  test('tiny-llama3-lora (PEFT) -> GGUF equals llama.cpp\'s convert_lora_to_gguf output', async () => {
    const out = join(tmp, 'lora.gguf');
    const s = await convertAdapter(golden('hf', 'tiny-llama3-lora'), out);
    expect(s).toMatchObject({ direction: 'peft->gguf', rank: 8, alpha: 16, ggufAlpha: 16, pairs: 28, permuted: 8, rslora: false });
    expectSameTensors(out, golden('gguf', 'tiny-l3.lora-r8.f32.gguf'));
    const model = await loadModel(golden('gguf', 'tiny-l3.f32.gguf'));
    try {
      const ad = (await import('../lib/core/native.js')).native().loadAdapter(model.nativeHandle, out);
      expect(ad.info()).toMatchObject({ alpha: 16, rank: 8 });
    } finally {
      model.dispose();
    }
  });

  test('oracle-lora-adapter round-trips PEFT -> GGUF -> PEFT bit-exactly', async () => {
    const g = join(tmp, 'oracle.gguf');
    const back = join(tmp, 'oracle-peft');
    await convertAdapter(golden('hf', 'oracle-lora-adapter'), g);
    const s = await convertAdapter(g, back);
    expect(s).toMatchObject({ direction: 'gguf->peft', rank: 8, alpha: 16, pairs: 28, permuted: 8 });
    expect(Buffer.compare(readFileSync(join(back, 'adapter_model.safetensors')), readFileSync(golden('hf', 'oracle-lora-adapter', 'adapter_model.safetensors')))).toBe(0);
    const cfg = JSON.parse(readFileSync(join(back, 'adapter_config.json'), 'utf8'));
    const orig = JSON.parse(readFileSync(golden('hf', 'oracle-lora-adapter', 'adapter_config.json'), 'utf8'));
    for (const k of ['r', 'lora_alpha', 'target_modules', 'use_rslora', 'peft_type', 'base_model_name_or_path', 'fan_in_fan_out'])
      expect(cfg[k], k).toEqual(orig[k]);
  });

  test('llama.cpp\'s GGUF adapter -> PEFT needs the base model for head counts, then matches the PEFT original', async () => {
    await expect(convertAdapter(golden('gguf', 'tiny-l3.lora-r8.f32.gguf'), join(tmp, 'nobase'))).rejects.toThrow(/head counts/);
    const out = join(tmp, 'golden-peft');
    await convertAdapter(golden('gguf', 'tiny-l3.lora-r8.f32.gguf'), out, { baseConfig: golden('gguf', 'tiny-l3.f32.gguf') });
    expect(Buffer.compare(readFileSync(join(out, 'adapter_model.safetensors')), readFileSync(golden('hf', 'tiny-llama3-lora', 'adapter_model.safetensors')))).toBe(0);
  });
});

describe('CLI commands (registerConvertCommands)', () => {
  const run = runConvertCommand;

  test('convert <hf-dir> --out --json', async () => {
    const out = join(tmp, 'cli.gguf');
    const text = await run(['convert', golden('hf', 'tiny-llama3'), '--out', out, '--type', 'f32', '--json', '-q']);
    expect(JSON.parse(text)).toMatchObject({ out, tensors: 39, type: 'f32' });
    expect(Buffer.compare(readFileSync(out), readFileSync(golden('gguf', 'tiny-l3.f32.gguf')))).toBe(0);
  });

  test('convert with --lora-alpha and a human summary', async () => {
    const text = await run(['convert', golden('hf', 'codi-tiny'), '-o', join(tmp, 'cli-codi.gguf'), '--weights', 'model.safetensors', '--lora-alpha', '8', '-q']);
    expect(text).toMatch(/merged LoRA into 28 matrices: r 16, alpha 8 \(option\)/);
    expect(text).toMatch(/latent head \(codi\)/);
  });

  test('convert-adapter IN --out OUT', async () => {
    const text = await run(['convert-adapter', golden('hf', 'tiny-llama3-lora'), '--out', join(tmp, 'cli-lora.gguf'), '-q']);
    expect(text).toMatch(/peft->gguf.*28 LoRA pairs, r 8, alpha 16/);
  });

  test('bad option values are refused by the parser', async () => {
    await expect(run(['convert', golden('hf', 'tiny-llama3'), '--out', join(tmp, 'y.gguf'), '--type', 'q4_0'])).rejects.toThrow();
    await expect(run(['convert', golden('hf', 'tiny-llama3'), '--out', join(tmp, 'y.gguf'), '--lora-alpha', '-2'])).rejects.toThrow();
  });
});
