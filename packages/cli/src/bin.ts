#!/usr/bin/env node
import { relaunchWithMallocTunables } from '@ir2f/runtime';
import { runCli } from './program.js';

// onnxruntime's kernels page-fault a fresh output buffer every call under glibc's default malloc (see
// @ir2f/runtime's README): the CLI runs itself with the malloc tunables that keep those buffers
const relaunched = await relaunchWithMallocTunables();
process.exitCode = relaunched ?? await runCli(process.argv);
