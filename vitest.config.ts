import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // One process per test file: the addon keeps per-process state, and a native crash then
    // fails one file instead of taking the runner down.
    pool: 'forks',
    // The engine already uses every core for each eval; more parallel files only add contention.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
