// `lro-native report traces.jsonl --out trace.html`: the HTML view of any trace file (the pipeline
// writes its own report.html beside report.md).
import { Option, type Command } from 'commander';
import { basename } from 'node:path';
import { writeFileAtomic } from '../../lib/core/atomic-file.js';
import { traceHtml } from '../../lib/study/report-html.js';
import { readTraceRecords } from '../../lib/tasks/inputs.js';
import { intArg } from '../cli-util.js';

export function registerReportCommands(program: Command): void {
  program
    .command('report')
    .description('an HTML page (inline SVG, no network) for a trace file: ablation effect matrix, logit-lens heatmaps and early decodes of sample questions')
    .argument('<traces.jsonl>', 'a trace file (lro-native trace)')
    .requiredOption('--out <file.html>', 'where to write the page')
    .addOption(new Option('--samples <n>', 'sample questions shown in detail').argParser(intArg(0, 1000)).default(5))
    .action(async (traces: string, opts: { out: string; samples: number }) => {
      const records = await readTraceRecords(traces);
      await writeFileAtomic(opts.out, traceHtml(records, `Trace report: ${basename(traces)}`, opts.samples));
      process.stderr.write(`report: ${records.length} questions -> ${opts.out}\n`);
    });
}
