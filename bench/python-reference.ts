/** Where the PyTorch references run: Debian's python3 (python3-torch installs for it, not for pyenv's). */
import { realpathSync } from 'node:fs';

export const DEBIAN_PYTHON = '/usr/bin/python3';

/** The BLAS behind Debian's torch: the reference (netlib) one makes every matmul of the PyTorch twin slow. */
export function debianBlas(): string {
  try {
    const lib = realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3');
    if (lib.includes('openblas')) return 'OpenBLAS';
    if (lib.includes('blis')) return 'BLIS';
    return 'reference BLAS (slow: apt-get install libopenblas0-pthread for a fair PyTorch reference)';
  } catch {
    return 'unknown';
  }
}

