/** The `ir2f` command line (commander). Commands land here as their issues are done; today: `data make`. */
import { Command, CommanderError } from 'commander';
import { Ir2fError } from '@ir2f/core';
import { dataMake } from './data-make.js';

export interface CliIo {
  log?: (line: string) => void;
  error?: (line: string) => void;
}

/** The command tree; errors throw (exitOverride) instead of exiting, so the CLI can be run in-process. */
export function buildProgram(io: CliIo = {}): Command {
  const log = io.log ?? console.log;
  const error = io.error ?? console.error;
  // set before adding subcommands: commander copies these settings into each subcommand when it is created
  const program = new Command('ir2f')
    .description('Domain adaptive semantic segmentation with IR2F (implicit-neural-representation rectified pseudo-labels)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => log(s.trimEnd()), writeErr: (s) => error(s.trimEnd()) })
    .showHelpAfterError();
  const data = program.command('data').description('datasets: generate the embedded benchmarks');
  data.command('make')
    .description('generate an embedded domain-shift benchmark in the real dataset layouts')
    .argument('<name>', 'synth2real | day2night')
    .requiredOption('-o, --out <dir>', 'output folder (new or empty)')
    .option('--seed <n>', 'generation seed', '0')
    .option('--size <WxH>', 'image size', '128x96')
    .option('--counts <s,t,v>', 'source, target-train and target-val image counts (default 300,300,100)')
    .option('--preview [file]', 'also write a preview grid PNG (default <out>/preview.png)')
    .option('--overwrite', 'replace an existing benchmark in --out')
    .action((name: string, opts) => dataMake(name, opts, log));
  return program;
}

/** Run with `argv` (node-style: [node, script, ...args]); returns the exit code instead of exiting. */
export async function runCli(argv: string[], io: CliIo = {}): Promise<number> {
  const error = io.error ?? console.error;
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    error(err instanceof Ir2fError || err instanceof Error ? `ir2f: ${err.message}` : `ir2f: ${String(err)}`);
    return 1;
  }
}
