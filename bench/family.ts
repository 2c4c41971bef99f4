/**
 * `npm run bench -- family`: the small preset across the embedded family (issue: presets that hold beyond one
 * renderer). For each member: source-only, baseline and oracle over paired seeds, the baseline's paired gain over
 * source-only (mean ± std, t) and the share of the source-only → oracle gap it closes; IR2F rungs, when named
 * in --variants, against the baseline with §5.3's rule. With --curve, baseline and source-only at a longer
 * schedule evaluated every 100 steps on two members (and the oracle): mIoU and the share of the gap closed against
 * steps, the evidence for the step budget.
 *
 *   npm run bench -- family [--members camera,fog,sensor,city19,synth2real,day2night] [--seeds 3]
 *                           [--variants source-only,baseline,oracle,...] [--table-only] [--fresh]
 *                           [--curve [--curve-steps 1200] [--curve-members sensor,city19]]
 *                           [--tag NAME --set key=value ... [--tag-variants baseline]]
 *
 * A preset candidate is a tag and its --sets: the tagged variants run with them and are stored as
 * `<variant>+<tag>`; the others are the untagged (preset) runs, so a change that only the baseline sees (τ, the
 * mixer) costs only the baseline's runs. Each candidate keeps its own section in bench/RESULTS.md.
 */
import { parseArgs } from 'node:util';
import { promises as fs } from 'node:fs';
import sharp from 'sharp';
import { EMBEDDED_BENCHMARKS, type EmbeddedBenchmarkName } from '@ir2f/datasets';
import { pairedStats, PRESET_VERSION, readRun, runStored, VARIANTS, type RunRecord, type VariantName } from './ablation.js';
import { writeSection } from './timing.js';

const pct = (x: number) => (100 * x).toFixed(1);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const meanStd = (xs: number[]) => {
  const m = mean(xs);
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return xs.length > 1 ? `${pct(m)} ± ${pct(sd)}` : `${pct(m)} (1 seed)`;
};
const signed = (x: number, d = 2) => `${x >= 0 ? '+' : ''}${x.toFixed(d)}`;

async function runsOf(member: string, variant: string, seeds: number[]): Promise<Map<number, RunRecord>> {
  const runs = await Promise.all(seeds.map((s) => readRun(member, variant, s)));
  return new Map(runs.filter((r): r is RunRecord => !!r).map((r) => [r.seed, r]));
}

/** `args`: the options after `family` (refusals of bad ones come before any run). */
export async function benchFamily(args = process.argv.slice(3)): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      members: { type: 'string', default: 'camera,fog,sensor,city19,synth2real,day2night' }, seeds: { type: 'string', default: '3' },
      variants: { type: 'string', default: 'source-only,baseline,oracle' }, 'table-only': { type: 'boolean', default: false },
      fresh: { type: 'boolean', default: false }, curve: { type: 'boolean', default: false }, 'curve-steps': { type: 'string', default: '1200' },
      'curve-members': { type: 'string', default: 'sensor,city19' },
      tag: { type: 'string' }, set: { type: 'string', multiple: true, default: [] },
      'tag-variants': { type: 'string', default: 'source-only,baseline,oracle' },
    },
  });
  const tag = values.tag;
  if (values.set!.length && !tag) throw new Error('--set needs --tag NAME: the candidate\'s runs are stored under it');
  if (tag && !/^[\w.=-]+$/.test(tag)) throw new Error(`--tag '${tag}': letters, digits, '.', '=', '-' and '_' only (it names files)`);
  const tagged = new Set(tag ? values['tag-variants']!.split(',') : []);
  const stored = (v: string) => (tagged.has(v) ? `${v}+${tag}` : v);
  const members = values.members!.split(',') as EmbeddedBenchmarkName[];
  for (const m of members) if (!(EMBEDDED_BENCHMARKS as readonly string[]).includes(m)) throw new Error(`unknown member '${m}'; known: ${EMBEDDED_BENCHMARKS.join(', ')}`);
  const variants = values.variants!.split(',') as VariantName[];
  for (const v of variants) if (!(v in VARIANTS)) throw new Error(`unknown variant '${v}'; known: ${Object.keys(VARIANTS).join(', ')}`);
  for (const need of ['source-only', 'baseline', 'oracle'] as const) if (!variants.includes(need)) variants.unshift(need);
  const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);
  /** The untagged variants at the preset, the tagged ones with the candidate's --sets; each stored under its own name. */
  const runSplit = async (benchmarks: EmbeddedBenchmarkName[], vs: readonly VariantName[], runSeeds: number[], extra: { set?: string[]; suffix?: string; curve?: boolean } = {}) => {
    for (const candidate of [false, true]) {
      const part = vs.filter((v) => tagged.has(v) === candidate);
      if (!part.length) continue;
      await runStored({
        benchmarks, variants: part, seeds: runSeeds, fresh: values.fresh, curve: extra.curve,
        set: [...(extra.set ?? []), ...(candidate ? values.set! : [])], recordAs: (v) => `${stored(v)}${extra.suffix ?? ''}`,
      });
    }
  };
  if (!values['table-only']) await runSplit(members, variants, seeds);
  if (values.curve) {
    const steps = Number(values['curve-steps']);
    await runSplit(values['curve-members']!.split(',') as EmbeddedBenchmarkName[], ['source-only', 'baseline', 'oracle'], [0], {
      set: [`train.steps=${steps}`, 'train.evalEvery=100', `train.checkpointEvery=${steps}`], suffix: `@${steps}`, curve: true,
    });
  }

  const rows = [
    '| member | source-only | baseline | oracle | baseline − source-only (paired, mean ± std) | t | share of the gap closed | ms/it (baseline) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const rungs = ['| member | variant − baseline | paired seeds | Δ mIoU (mean ± std) | t | Δ boundary mIoU | ms/it (variant / baseline) |', '|---|---|---|---|---|---|---|'];
  const shares: number[] = [];
  const gains: { member: string; positive: boolean }[] = [];
  for (const member of members) {
    const [so, base, oracle] = await Promise.all(['source-only', 'baseline', 'oracle'].map((v) => runsOf(member, stored(v), seeds)));
    const paired = seeds.filter((s) => so.has(s) && base.has(s));
    if (!paired.length) continue;
    const d = pairedStats(paired.map((s) => 100 * (base.get(s)!.miou - so.get(s)!.miou)));
    const closed = seeds.filter((s) => so.has(s) && base.has(s) && oracle.has(s))
      .map((s) => (base.get(s)!.miou - so.get(s)!.miou) / (oracle.get(s)!.miou - so.get(s)!.miou));
    if (closed.length) shares.push(mean(closed));
    gains.push({ member, positive: d.mean > 0 });
    const col = (m: Map<number, RunRecord>) => (m.size ? meanStd([...m.values()].map((r) => r.miou)) : '—');
    rows.push(`| ${member} | ${col(so)} | ${col(base)} | ${col(oracle)} | ${signed(d.mean)} ± ${d.std.toFixed(2)} (${paired.length} seeds) | ` +
      `${Number.isFinite(d.t) ? d.t.toFixed(2) : '—'} | ${closed.length ? `${(100 * mean(closed)).toFixed(0)} %` : '—'} | ${mean([...base.values()].map((r) => r.msPerStep)).toFixed(0)} |`);
    for (const v of variants.filter((x) => !['source-only', 'baseline', 'oracle'].includes(x))) {
      const runs = await runsOf(member, stored(v), seeds);
      const pairs = [...runs.keys()].filter((s) => base.has(s));
      if (pairs.length < 2) continue;
      const dv = pairedStats(pairs.map((s) => 100 * (runs.get(s)!.miou - base.get(s)!.miou)));
      const db = pairedStats(pairs.map((s) => 100 * (runs.get(s)!.boundaryMiou - base.get(s)!.boundaryMiou)));
      rungs.push(`| ${member} | ${VARIANTS[v].label} | ${pairs.join(',')} | ${signed(dv.mean)} ± ${dv.std.toFixed(2)} | ${dv.t.toFixed(2)} | ${signed(db.mean)} | ` +
        `${mean(pairs.map((s) => runs.get(s)!.msPerStep)).toFixed(0)} / ${mean(pairs.map((s) => base.get(s)!.msPerStep)).toFixed(0)} |`);
    }
  }
  // the issue's rule: a positive paired gain on every member, and at least 30 % of the gap closed on average
  const everywhere = gains.length > 0 && gains.every((g) => g.positive);
  const avgShare = shares.length ? mean(shares) : NaN;
  const holds = everywhere && avgShare >= 0.3;
  const missing = EMBEDDED_BENCHMARKS.filter((m) => !gains.some((g) => g.member === m));
  const verdict = `The preset ${holds ? 'holds' : 'does not hold'} across ${missing.length ? 'these members' : 'the family'} ` +
    `(rule: baseline > source-only on every member, ≥ 30 % of the gap closed on average): it beats source-only (paired mean > 0) on ` +
    `${gains.filter((g) => g.positive).length} of ${gains.length} members${everywhere ? '' : ` (not on ${gains.filter((g) => !g.positive).map((g) => g.member).join(', ')})`}; ` +
    `it closes ${Number.isFinite(avgShare) ? (100 * avgShare).toFixed(0) : '—'} % of the source-only → oracle gap on average.` +
    `${missing.length ? ` Not in this table: ${missing.join(', ')}.` : ''}`;
  let curveText = '';
  if (values.curve || values['table-only']) curveText = await curveSection(values['curve-members']!.split(','), Number(values['curve-steps']), stored,
    tagged.has('baseline') ? `family-curves-${tag}.png` : 'family-curves.png');
  console.log(`\n${rows.join('\n')}\n\n${verdict}\n${rungs.length > 2 ? `\n${rungs.join('\n')}\n` : ''}${curveText}`);
  await writeSection(`The embedded family (small preset v${PRESET_VERSION}${tag ? `, candidate ${tag}: ${values.set!.join(' ')} on ${[...tagged].join(', ')}` : ''})`,
    `\`npm run bench -- family ${args.join(' ')}\` (seeds ${seeds.join(', ')}; the small preset: mit-tiny-daformer, 96² crops, ` +
    `400 steps; target mIoU on each member's 100 val images over its classes: 8, or 19 for city19; share of the gap = ` +
    `(baseline − source-only) / (oracle − source-only), per seed, averaged).\n\n${rows.join('\n')}\n\n${verdict}\n` +
    `${rungs.length > 2 ? `\nIR2F rungs against the baseline on the family:\n\n${rungs.join('\n')}\n` : ''}${curveText}`);
}

/** mIoU against steps from the curve runs that exist (a table, and a PNG next to the other figures). */
async function curveSection(members: string[], steps: number, stored: (v: string) => string, png: string): Promise<string> {
  const series: { name: string; points: [number, number][] }[] = [];
  // the share of the source-only → oracle gap the baseline has closed at each step, per member with all three
  const shares: { name: string; at: Map<number, number> }[] = [];
  for (const m of members) {
    const runs = new Map<string, [number, number][]>();
    for (const v of ['source-only', 'baseline', 'oracle']) {
      const r = await readRun(m, `${stored(v)}@${steps}`, 0);
      if (r?.curve?.length) { series.push({ name: `${m} ${v}`, points: r.curve }); runs.set(v, r.curve); }
    }
    const [so, base, or] = ['source-only', 'baseline', 'oracle'].map((v) => new Map(runs.get(v) ?? []));
    if (so.size && base.size && or.size) {
      shares.push({ name: `${m} share`, at: new Map([...base.keys()].filter((st) => so.has(st) && or.has(st))
        .map((st) => [st, (base.get(st)! - so.get(st)!) / (or.get(st)! - so.get(st)!)])) });
    }
  }
  if (!series.length) return '';
  const stepsAt = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const cell = (v: number | undefined, unit = '') => (v === undefined ? '—' : `${pct(v)}${unit}`);
  const table = [`| step | ${[...series, ...shares].map((s) => s.name).join(' | ')} |`, `|---|${[...series, ...shares].map(() => '---|').join('')}`,
    ...stepsAt.map((st) => `| ${st} | ${[...series.map((s) => cell(s.points.find((q) => q[0] === st)?.[1])), ...shares.map((s) => cell(s.at.get(st), ' %'))].join(' | ')} |`)];
  const file = new URL(`../docs/images/${png}`, import.meta.url);
  await fs.writeFile(file, await curvePng(series, steps));
  return `\nStudent mIoU against steps at a ${steps}-step schedule (seed 0; \`--curve\`; the share is (baseline − source-only) / ` +
    `(oracle − source-only) at that step), figure docs/images/${png}:\n\n${table.join('\n')}\n`;
}

async function curvePng(series: { name: string; points: [number, number][] }[], steps: number): Promise<Buffer> {
  const [W, H, x0, y0, w, h] = [760, 420, 60, 30, 520, 340];
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [lo, hi] = [Math.floor(Math.min(...ys) * 20) / 20, Math.ceil(Math.max(...ys) * 20) / 20];
  const px = (x: number) => x0 + (x / steps) * w;
  const py = (y: number) => y0 + h - ((y - lo) / Math.max(hi - lo, 0.05)) * h;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const dash = (name: string) => (name.endsWith('source-only') ? '5,4' : name.endsWith('oracle') ? '1,3' : '');
  // one colour per member, one dash per variant
  const members = [...new Set(series.map((x) => x.name.split(' ')[0]))];
  const memberColour = (name: string) => colors[members.indexOf(name.split(' ')[0]) % colors.length];
  const lines = series.map((s, i) => `<polyline fill="none" stroke="${memberColour(s.name)}" stroke-width="2" stroke-dasharray="${dash(s.name)}" ` +
    `points="${s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>` +
    `<text x="${x0 + w + 12}" y="${y0 + 16 + i * 18}" font-size="12" fill="${memberColour(s.name)}">${s.name}</text>`).join('\n');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${px(f * steps)}" y="${y0 + h + 16}" font-size="11" text-anchor="middle">${Math.round(f * steps)}</text>` +
    `<text x="${x0 - 6}" y="${py(lo + f * (hi - lo)) + 4}" font-size="11" text-anchor="end">${pct(lo + f * (hi - lo))}</text>`).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>
<text x="${x0 + w / 2}" y="18" font-size="14" text-anchor="middle">student mIoU (%) against steps, ${steps}-step schedule</text>
<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#888"/>${ticks}
${lines}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}
