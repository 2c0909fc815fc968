// `lro-native merge`: joins the outputs of a sharded run (--shard, Slurm arrays, Kubernetes Indexed Jobs).
import type { Command } from 'commander';
import { mergeShards } from '../../lib/study/merge.js';

interface MergeCliOptions {
  out: string;
  overwrite?: boolean;
  json?: boolean;
  quiet?: boolean;
}

export function registerMergeCommands(program: Command): void {
  program
    .command('merge')
    .description('join the outputs of every shard of one run (trace / eval files, capture folders) into what one machine would have written: records in data order')
    .argument('<parts...>', "the shards' outputs, e.g. traces.shard-*-of-4.jsonl or capture.shard-*-of-4")
    .requiredOption('-o, --out <path>', 'the merged file or folder (capture shards are moved into it, not copied)')
    .option('--overwrite', 'replace an existing merged output')
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no summary on stderr')
    .action(async (parts: string[], opts: MergeCliOptions) => {
      const s = await mergeShards(parts, { out: opts.out, overwrite: opts.overwrite ?? false });
      if (opts.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      else if (!opts.quiet) process.stderr.write(`merge: ${s.shards} ${s.kind} shards, ${s.records} records, into ${s.out}\n`);
    });
}
