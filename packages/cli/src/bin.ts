#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824:glibc.malloc.arena_max=1:${GLIBC_TUNABLES} node
// The #! line gives glibc's malloc the tunables of @ir2f/runtime's MALLOC_TUNABLES (its README says why:
// onnxruntime's kernels otherwise page-fault a fresh output buffer on every call); a value of the user's own
// comes after, so it wins. Elsewhere (musl, macOS) the variable is ignored. Not a relaunch: a scheduler that
// kills this process must not leave a training child behind.
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv);
