/**
 * `npm run bench -- <name>`: benchmarks that print ratios against a reference measured in the same run.
 * Names: backend (kernel and training-step cost), shift (domain shift of the embedded benchmarks),
 * models (inference cost per model preset: tfjs, onnxruntime, PyTorch), train (one UDA iteration vs PyTorch,
 * peak RSS).
 */
import { benchBackend } from './backend.js';
import { benchDomainShift } from './domain-shift.js';
import { benchModels } from './models.js';
import { benchRectifier } from './rectifier.js';
import { benchTrain } from './train.js';

const BENCHES: Record<string, () => Promise<void>> = {
  backend: benchBackend, shift: benchDomainShift, models: benchModels, train: benchTrain, rectifier: benchRectifier,
};

async function main(): Promise<void> {
  // the first argument names the benchmark; the rest are its own options
  const names = process.argv.slice(2, 3).filter((a) => !a.startsWith('-'));
  const chosen = names.length ? names : Object.keys(BENCHES);
  for (const name of chosen) {
    const bench = BENCHES[name];
    if (!bench) throw new Error(`unknown benchmark '${name}'; available: ${Object.keys(BENCHES).join(', ')}`);
    await bench();
  }
}

main().catch((err: unknown) => {
  console.error(`ir2f bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
