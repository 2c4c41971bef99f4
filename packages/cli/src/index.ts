/** @ir2f/cli: the `ir2f` command, also callable in-process. */
export { buildProgram, runCli, type CliIo } from './program.js';
export { dataMake, type DataMakeOptions } from './data-make.js';
