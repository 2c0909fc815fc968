// The npm tarball installs and runs on a machine without a compiler: prebuilt addon + dist/.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cliPath, modelPath, projectRoot } from './helpers/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'lro-pack-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function which(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(d, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

// An environment without the parent npm's settings (npm_config_*, lifecycle variables).
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'INIT_CWD') env[k] = v;
  return { ...env, ...extra };
}

describe('packaging', () => {
  test('npm pack -> install without cc/c++/cmake -> npx lro-native info', () => {
    const addon = join(projectRoot, 'build', 'Release', 'lro_native.node');
    expect(existsSync(addon), 'build the addon first (npm run build:native)').toBe(true);
    execFileSync(process.execPath, [join(projectRoot, 'tools', 'copy-prebuild.mjs')], { cwd: projectRoot, stdio: 'pipe' });

    const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8'));
    for (const s of ['install', 'preinstall', 'postinstall']) expect(pkg.scripts?.[s], `package.json must have no ${s} script`).toBeUndefined();

    // Scripts are skipped: dist/ and the prebuild are fresh already (global setup, copy above).
    const npm = which('npm')!;
    const packed = JSON.parse(
      execFileSync(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: projectRoot, env: cleanEnv({}), encoding: 'utf8' }),
    )[0] as { filename: string; files: { path: string }[] };
    const files = packed.files.map((f) => f.path);
    expect(files).toContain(`prebuilds/${process.platform}-${process.arch}/lro-native.node`);
    expect(files).toContain('dist/bin/lro-native.js');
    expect(files).toContain('dist/lib/index.js');
    expect(files).toContain('dist/lib/index.d.ts');
    expect(files).toContain('package.json');
    expect(files.some((f) => f.startsWith('native/') || f.startsWith('test/') || f.startsWith('build/'))).toBe(false);

    // PATH with node/npm/npx and basic tools only.
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    for (const tool of ['node', 'npm', 'npx', 'sh', 'bash', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'ln', 'chmod', 'uname', 'dirname', 'basename', 'readlink', 'sed', 'grep']) {
      const p = which(tool);
      // Links to the real files: npm-cli.js finds its own modules through its real path.
      if (p) symlinkSync(realpathSync(p), join(bin, tool));
    }
    const env = cleanEnv({ PATH: bin });
    for (const c of ['cc', 'c++', 'gcc', 'g++', 'cmake', 'make']) expect(existsSync(join(bin, c))).toBe(false);

    const app = join(tmp, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'lro-pack-test', version: '1.0.0', private: true }));
    execFileSync(join(bin, 'npm'), ['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, packed.filename)], {
      cwd: app,
      env,
      stdio: 'pipe',
    });
    const installed = join(app, 'node_modules', 'lro-native');
    expect(existsSync(join(installed, 'build'))).toBe(false);
    const out = execFileSync(join(bin, 'npx'), ['lro-native', 'info', modelPath('f32')], { cwd: app, env, encoding: 'utf8' });
    expect(out).toMatch(/architecture\s+llama/);
    expect(out).toMatch(/tensors\s+39 /);
    // The library entry point works from the installed package too.
    const lib = execFileSync(
      join(bin, 'node'),
      ['--input-type=module', '-e', `import { native } from 'lro-native'; console.log(typeof native().loadModel);`],
      { cwd: app, env, encoding: 'utf8' },
    );
    expect(lib.trim()).toBe('function');
  }, 300_000);

  // `npx lro-native` in a checkout (the README's first command) runs the bin through a link that
  // npx makes once and keeps: after dist/ is rebuilt the file must be executable by itself (tsc
  // writes mode 644; build:ts and the test setup add the execute bits).
  test('the checkout\'s command-line entry point is executable', () => {
    expect(statSync(cliPath).mode & 0o111).toBe(0o111);
  });
});
