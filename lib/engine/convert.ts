// Conversion of Hugging Face checkpoints to GGUF and of LoRA adapters between PEFT and GGUF.
// Options are validated here; every byte is read, merged and written by the native engine.
import { readdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { InputError } from '../core/errors.js';
import {
  native,
  type NativeConvertAdapterSummary,
  type NativeConvertHfSummary,
  type NativeConvertProgress,
} from '../core/native.js';
import { parseOptions } from '../core/options.js';

export type ConvertProgress = NativeConvertProgress;
export type ConvertSummary = NativeConvertHfSummary;
export type ConvertAdapterSummary = NativeConvertAdapterSummary;

export const CONVERT_TYPES = ['f32', 'f16', 'bf16', 'q8_0'] as const;

const progressFn = z.custom<(p: ConvertProgress) => void>((v) => typeof v === 'function', { message: 'expected a function' });

export const ConvertOptionsSchema = z
  .object({
    /** Type of the 2-D weights; norms and rope_freqs stay F32 (as llama.cpp's converter). */
    type: z.enum(CONVERT_TYPES).default('f32'),
    /** Latent-head sidecar: codi (needs the CODI projection prj.*), coconut (no tensors), none. Default: codi when prj.* exists. */
    latent: z.enum(['codi', 'coconut', 'none']).optional(),
    /** LoRA alpha of a checkpoint with unmerged LoRA weights (else README.json / adapter_config.json in the folder). */
    loraAlpha: z.number().positive().finite().optional(),
    /** Sidecar path; default <out without .gguf>.latent.gguf */
    latentOut: z.string().min(1).optional(),
    /** Default number of latent steps recorded in the sidecar (else README.json num_latent, else 6). */
    latentSteps: z.number().int().min(0).max(4096).optional(),
    /** Weights file to read when the folder holds several (e.g. pytorch_model.bin beside model.safetensors). */
    weights: z.string().min(1).optional(),
    /** The same as weights. */
    source: z.string().min(1).optional(),
    /** Folder with tokenizer.json / tokenizer_config.json when the model folder has none. */
    tokenizerDir: z.string().min(1).optional(),
    /** general.name; default from the folder name. */
    name: z.string().min(1).optional(),
    /** Names of embedding rows past the tokenizer: auto (CODI names when exactly 3), codi, llama ([PAD<id>]). */
    padNames: z.enum(['auto', 'codi', 'llama']).default('auto'),
    /** tokenizer.ggml.pre, when the pre-tokenizer is not recognised. */
    pre: z.string().min(1).optional(),
    /**
     * Tokenizer metadata only, no tensors (as llama.cpp's --vocab-only): llama.* keys too when a
     * config.json exists; weights and config are optional, so tokenizer files alone suffice.
     */
    vocabOnly: z.boolean().default(false),
    /** Keep a LoRA checkpoint's LoRA unmerged: the base as is, the LoRA as a llama.cpp GGUF adapter (loraOut, default <out minus .gguf>.lora.gguf). */
    noMerge: z.boolean().default(false),
    loraOut: z.string().min(1).optional(),
    /** Threads for the LoRA merge; 0 = all cores. */
    threads: z.number().int().min(0).max(1024).default(0),
    onProgress: progressFn.optional(),
  })
  .strict();
export type ConvertOptions = z.input<typeof ConvertOptionsSchema>;

export const ConvertAdapterOptionsSchema = z
  .object({
    /** Base model config.json, its folder, or the model GGUF: head counts for the Q/K row permutation. */
    baseConfig: z.string().min(1).optional(),
    /** Tensor type when writing GGUF. */
    type: z.enum(CONVERT_TYPES).default('f32'),
    /** general.name of a written GGUF adapter. */
    name: z.string().min(1).optional(),
    onProgress: progressFn.optional(),
  })
  .strict();
export type ConvertAdapterOptions = z.input<typeof ConvertAdapterOptionsSchema>;

function kind(path: string): 'file' | 'dir' | 'missing' | 'other' {
  try {
    const st = statSync(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return 'missing';
  }
}

function requireParentDir(out: string, what: string): void {
  const parent = dirname(resolve(out));
  if (kind(parent) !== 'dir') throw new InputError(`${what}: folder ${parent} does not exist`);
}

/** Hugging Face Llama folder -> GGUF (plus a latent-head sidecar for CODI / Coconut). */
export async function convertHf(dir: string, out: string, options: ConvertOptions = {}): Promise<ConvertSummary> {
  const { source, ...o } = parseOptions(ConvertOptionsSchema, options, 'convert options');
  if (source !== undefined) {
    if (o.weights !== undefined && o.weights !== source) throw new TypeError('invalid convert options: weights and source name different files');
    o.weights = source;
  }
  const k = kind(dir);
  if (k === 'file')
    throw new InputError(
      /\.gguf$/i.test(dir)
        ? `${dir} is a GGUF file already; convert reads a Hugging Face model folder (config.json, model.safetensors or pytorch_model.bin)`
        : `${dir} is a file; convert reads a Hugging Face model folder (give the folder holding config.json, not a file in it)`,
    );
  if (k !== 'dir') throw new InputError(`model folder not found: ${dir}`);
  if (kind(out) === 'dir') throw new InputError(`output is a folder, expected a .gguf file path: ${out}`);
  requireParentDir(out, 'output');
  if (o.latentOut) requireParentDir(o.latentOut, 'latent head output');
  if (o.tokenizerDir && kind(o.tokenizerDir) !== 'dir') throw new InputError(`tokenizer folder not found: ${o.tokenizerDir}`);
  return native().convertHf(dir, out, o);
}

/** PEFT LoRA folder -> llama.cpp GGUF adapter, or back (the direction follows the input). */
export async function convertAdapter(input: string, out: string, options: ConvertAdapterOptions = {}): Promise<ConvertAdapterSummary> {
  const o = parseOptions(ConvertAdapterOptionsSchema, options, 'convert-adapter options');
  const k = kind(input);
  if (k === 'missing') throw new InputError(`adapter not found: ${input}`);
  const toGguf = k === 'dir' || input.endsWith('.safetensors') || input.endsWith('.bin');
  if (!toGguf && !input.endsWith('.gguf'))
    throw new InputError(`cannot tell the adapter format of ${input} (expected a PEFT folder, a .safetensors file or a .gguf file)`);
  if (toGguf && kind(out) === 'dir') throw new InputError(`output is a folder; a PEFT adapter converts to a .gguf file: ${out}`);
  if (!toGguf && kind(out) === 'file') throw new InputError(`output is a file; a GGUF adapter converts to a PEFT folder: ${out}`);
  requireParentDir(out, 'output');
  if (o.baseConfig && kind(o.baseConfig) === 'missing') throw new InputError(`base config not found: ${o.baseConfig}`);
  return native().convertAdapter(input, out, o);
}

/** GGUF Llama -> Hugging Face folder; refuses a non-empty --out unless overwrite. */
export function exportHf(model: string, out: string, options: { latentHead?: string; overwrite?: boolean } = {}) {
  if (kind(model) !== 'file') throw new InputError(`model file not found: ${model}`);
  if (options.latentHead && kind(options.latentHead) !== 'file') throw new InputError(`latent head not found: ${options.latentHead}`);
  const k = kind(out);
  if (k === 'file' || k === 'other') throw new InputError(`--out is a file, expected a folder: ${out}`);
  if (k === 'dir' && readdirSync(out).length > 0 && !options.overwrite)
    throw new InputError(`${out} is not empty; pass --overwrite to write into it, or choose another --out`);
  if (k === 'missing') requireParentDir(out, 'output');
  return native().exportHf(model, out, { latentHead: options.latentHead });
}
