/**
 * `npm run bench -- <name>`: benchmarks that print ratios against a reference measured in the same run.
 * Names: backend (kernel and training-step cost), shift (domain shift of the embedded benchmarks),
 * models (inference cost per model preset: tfjs, onnxruntime, PyTorch), train (one UDA iteration vs PyTorch,
 * peak RSS), ablation (DESIGN §5.3's ladder, 3 seeds, both benchmarks), rectifier (its baseline and INR rungs),
 * rectifier-cost (the INR rectifier's time against the decode head's), family (the small preset across the
 * embedded family: source-only, baseline, oracle, and the share of the gap closed).
 */
import { relaunchWithMallocTunables } from '@ir2f/runtime';
import { benchBackend } from './backend.js';
import { benchDomainShift } from './domain-shift.js';
import { benchModels } from './models.js';
import { benchAblation, benchRectifier } from './ablation.js';
import { benchFamily } from './family.js';
import { benchRectifierCost } from './rectifier-cost.js';
import { benchTrain } from './train.js';

const BENCHES: Record<string, () => Promise<void>> = {
  backend: benchBackend, shift: benchDomainShift, models: benchModels, train: benchTrain, rectifier: benchRectifier,
  'rectifier-cost': benchRectifierCost,
  ablation: () => benchAblation(),
  family: benchFamily,
};

async function main(): Promise<void> {
  // the first argument names the benchmark; the rest are its own options
  const names = process.argv.slice(2, 3).filter((a) => !a.startsWith('-'));
  // without a name: the quick ones (the accuracy ladders take hours on 2 cores)
  const chosen = names.length ? names : ['backend', 'shift', 'models', 'train'];
  for (const name of chosen) {
    const bench = BENCHES[name];
    if (!bench) throw new Error(`unknown benchmark '${name}'; available: ${Object.keys(BENCHES).join(', ')}`);
    await bench();
  }
}

// glibc's malloc tunables for onnxruntime's kernels (see @ir2f/runtime's README): run again with them
const relaunched = await relaunchWithMallocTunables();
if (relaunched !== undefined) process.exit(relaunched);

main().catch((err: unknown) => {
  console.error(`ir2f bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
