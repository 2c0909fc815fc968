// Runs the convert commands in this process (registerConvertCommands), returning what they print.
import { Command } from 'commander';
import { vi } from 'vitest';
import { registerConvertCommands } from '../../bin/commands/convert.js';

export async function runConvertCommand(args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerConvertCommands(program);
  let stdout = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'lro-native', ...args]);
  } finally {
    spy.mockRestore();
  }
  return stdout;
}
