// The Kubernetes example (examples/k8s) checked without a cluster: both manifests parse and match
// the batch/v1 Job schema (test/helpers/k8s-job-schema.ts, strict: an unknown or misspelt field
// fails), the trace Job is Indexed with LRO_SHARD_COUNT equal to its completions, every mount names
// a volume, and the pods' commands are lro-native commands this version accepts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { JobSchema, type Job } from './helpers/k8s-job-schema.js';
import { runCli } from './helpers/cli.js';
import { projectRoot } from './helpers/paths.js';

function readJobs(file: string): Job[] {
  const docs = parseAllDocuments(readFileSync(join(projectRoot, 'examples', 'k8s', file), 'utf8'));
  return docs.map((d, i) => {
    expect(d.errors, `${file} document ${i}`).toEqual([]);
    const r = JobSchema.safeParse(d.toJS());
    expect(r.success, `${file}: ${r.success ? '' : JSON.stringify(r.error.issues)}`).toBe(true);
    return r.data!;
  });
}

describe('examples/k8s', () => {
  it('the Indexed Job and the merge Job are valid batch/v1 Jobs that fit together', async () => {
    const [trace] = readJobs('trace-indexed-job.yaml');
    const [merge] = readJobs('merge-job.yaml');
    expect(trace.spec.completionMode).toBe('Indexed');
    const n = trace.spec.completions!;
    const pod = trace.spec.template.spec;
    for (const job of [trace, merge]) {
      const spec = job.spec.template.spec;
      const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
      for (const c of spec.containers) for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${job.metadata.name}: mount ${m.name}`).toBe(true);
    }
    const c = pod.containers[0];
    expect(c.env?.find((e) => e.name === 'LRO_SHARD_COUNT')?.value).toBe(String(n));
    expect(merge.spec.template.spec.containers[0].args!.join(' ')).toContain(`shard-*-of-${n}`);
    // The pod's command line is one lro-native accepts (its options parse; --help stops before running).
    expect(c.command).toEqual(['npx', 'lro-native']);
    const r = await runCli([...c.args!, '--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/--shard <I\/N>/);
  });

  it('the schema refuses what Kubernetes would refuse', () => {
    const [trace] = readJobs('trace-indexed-job.yaml');
    const bad = (edit: (j: Job) => void) => {
      const j = structuredClone(trace);
      edit(j);
      return JobSchema.safeParse(j).success;
    };
    expect(bad(() => undefined)).toBe(true);
    expect(bad((j) => ((j.spec as Record<string, unknown>).completionMod = 'Indexed'))).toBe(false);
    expect(bad((j) => (j.spec.template.spec.restartPolicy = 'Always' as never))).toBe(false);
    expect(bad((j) => (j.spec.completionMode = 'indexed' as never))).toBe(false);
    expect(bad((j) => (j.spec.template.spec.containers = []))).toBe(false);
    expect(bad((j) => ((j as Record<string, unknown>).apiVersion = 'batch/v2'))).toBe(false);
  });
});
