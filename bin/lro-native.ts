#!/usr/bin/env node
// lro-native command line: registers the commands of bin/commands/ and runs the one asked for.
import { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isAbort } from './cli-util.js';
import { fileSystemMessage } from '../lib/core/errors.js';
import { registerConvertCommands } from './commands/convert.js';
import { registerLatentCommands } from './commands/latent.js';
import { registerMergeCommands } from './commands/merge.js';
import { registerModelCommands } from './commands/model.js';
import { registerOracleCommands } from './commands/oracle.js';
import { registerOrganismCommands } from './commands/organism.js';
import { registerReasoningCommands } from './commands/reasoning.js';
import { registerReportCommands } from './commands/report.js';
import { registerTaskCommands } from './commands/tasks.js';

function packageVersion(): string {
  // dist/bin/lro-native.js and bin/lro-native.ts sit at different depths below package.json.
  for (const rel of ['../../package.json', '../package.json']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return '0.0.0';
}

// ------------------------------------------------------------------ program

function buildProgram(): Command {
  const program = new Command();
  program
    .name('lro-native')
    .description('GGUF Llama inference, latent reasoning traces and activation capture on the CPU')
    .version(packageVersion())
    .configureOutput({ outputError: (str, write) => write(`lro-native: ${str.replace(/^error: /, '')}`) });

  registerModelCommands(program);
  registerReasoningCommands(program);
  registerConvertCommands(program);
  registerOracleCommands(program);
  registerLatentCommands(program);
  registerTaskCommands(program);
  registerOrganismCommands(program);
  registerMergeCommands(program);
  registerReportCommands(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (e) {
    if (isAbort(e)) {
      process.exitCode = 130;
      return;
    }
    const message = fileSystemMessage(e) ?? (e instanceof Error ? e.message : String(e));
    process.stderr.write(`lro-native: ${message}\n`);
    if (process.env.LRO_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    process.exitCode = 1;
  }
}

await main();
