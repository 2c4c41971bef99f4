/**
 * DESIGN §5.2 (v2), the rectification-aware mixture model over pseudo-label losses, in one place.
 *
 * ℓ(x) = −log p_θ(ŷ | x) on the valid target pixels of the mixed image, detached (read to the host), and
 * y = log max(ℓ, ℓ_min). The batch's y are a two-component mixture whose components are shared by all pixels,
 * with the rectifier's r(x) as each pixel's prior of being clean:
 *
 *   f(y | x) = r(x) · N(y; μ_c, σ_c) + (1 − r(x)) · N(y; μ_n, σ_n),   μ_c ≤ μ_n (clean = lower loss)
 *
 * - Fit (host, each step): `iterations` EM steps started from the running estimate (the first step: batch
 *   quantiles), E: γ_i = r_i N_c(y_i) / f(y_i | x_i); M: weighted means and stds, σ ≥ σ_min; the components are
 *   swapped if the clean one's mean ends above the noisy one's. The running estimate is then smoothed,
 *   θ ← m·θ + (1 − m)·θ_fit, and kept in float32 (`Loss.state`), so a resumed run fits exactly as a straight one.
 * - Posterior (the rectified reliability): γ(x) = r N_c(y) / f(y | x), detached.
 * - Student: weighted CE on target pixels with w = min(1, q · γ / γ̄) (§5.1.7's redistribution of the
 *   baseline's total weight), or, with `bootstrap`, the soft target γ·onehot(ŷ) + (1 − γ)·p_φ at weight q.
 * - Rectifier ψ: L_ψ = −mean log f(y | x), end to end through r (ℓ is detached, so the student cannot raise r by
 *   fitting ŷ); the gradient raises r where N_c(y) > N_n(y) and lowers it elsewhere.
 * - Warm-up: until the running fit separates (|μ_n − μ_c| > √((σ_c² + σ_n²)/2)), w = q and no L_ψ. Once
 *   separated it stays so (a flag in the state), so the weighting does not flicker.
 */
import * as tf from '@tensorflow/tfjs';

export interface Gaussian {
  mean: number;
  std: number;
}

export interface MixtureFit {
  clean: Gaussian;
  noisy: Gaussian;
}

export interface EmOptions {
  /** EM iterations per step (default 5). */
  iterations?: number;
  /** Floor σ_min on each component's std (default 0.05). */
  sigmaFloor?: number;
}

/** Losses below this count as this (log ℓ stays finite where the student is certain of ŷ). */
export const LOSS_FLOOR = 1e-6;

export const logLoss = (l: number): number => Math.log(Math.max(l, LOSS_FLOOR));

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

export function gaussianLogPdf(y: number, g: Gaussian): number {
  const z = (y - g.mean) / g.std;
  return -0.5 * z * z - Math.log(g.std) - HALF_LOG_2PI;
}

/**
 * γ = r N_c(y) / (r N_c(y) + (1 − r) N_n(y)), in log space: exact at r ∈ {0, 1} (γ = r there) and where both
 * densities underflow (γ falls back to r).
 */
export function posterior(y: number, r: number, fit: MixtureFit): number {
  if (r <= 0) return 0;
  if (r >= 1) return 1;
  const d = Math.log1p(-r) + gaussianLogPdf(y, fit.noisy) - Math.log(r) - gaussianLogPdf(y, fit.clean);
  if (Number.isNaN(d)) return r;
  return 1 / (1 + Math.exp(d));
}

/** Mixture log-likelihood log f(y | x) of one pixel (host; the tensor form is in `rmm.ts`). */
export function mixtureLogLikelihood(y: number, r: number, fit: MixtureFit): number {
  const a = r > 0 ? Math.log(r) + gaussianLogPdf(y, fit.clean) : -Infinity;
  const b = r < 1 ? Math.log1p(-r) + gaussianLogPdf(y, fit.noisy) : -Infinity;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(q * (sorted.length - 1))))];
}

/** A first fit from the batch alone: clean at the 25th percentile of y, noisy at the 85th, both with half the batch's std. */
export function initialFit(y: ArrayLike<number>, sigmaFloor = 0.05): MixtureFit {
  const sorted = Float64Array.from(y).sort();
  let mean = 0;
  for (const v of sorted) mean += v;
  mean /= Math.max(sorted.length, 1);
  let sq = 0;
  for (const v of sorted) sq += (v - mean) ** 2;
  const std = Math.max(sigmaFloor, Math.sqrt(sq / Math.max(sorted.length, 1)) / 2);
  return { clean: { mean: quantile(sorted, 0.25), std }, noisy: { mean: quantile(sorted, 0.85), std } };
}

/**
 * EM for the two components with fixed per-pixel priors r (only the components are fitted: r is the
 * rectifier's to learn). A component that loses all its responsibility keeps its previous parameters.
 */
export function emFit(y: ArrayLike<number>, prior: ArrayLike<number>, init: MixtureFit, opts: EmOptions = {}): MixtureFit {
  const iterations = opts.iterations ?? 5;
  const floor = opts.sigmaFloor ?? 0.05;
  const n = y.length;
  let fit: MixtureFit = { clean: { ...init.clean }, noisy: { ...init.noisy } };
  for (let it = 0; it < iterations; it++) {
    let [wc, sc, wn, sn] = [0, 0, 0, 0];
    const gamma = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const g = posterior(y[i], prior[i], fit);
      gamma[i] = g;
      wc += g;
      sc += g * y[i];
      wn += 1 - g;
      sn += (1 - g) * y[i];
    }
    const mc = wc > 1e-9 ? sc / wc : fit.clean.mean;
    const mn = wn > 1e-9 ? sn / wn : fit.noisy.mean;
    let [vc, vn] = [0, 0];
    for (let i = 0; i < n; i++) {
      vc += gamma[i] * (y[i] - mc) ** 2;
      vn += (1 - gamma[i]) * (y[i] - mn) ** 2;
    }
    fit = {
      clean: wc > 1e-9 ? { mean: mc, std: Math.max(floor, Math.sqrt(vc / wc)) } : fit.clean,
      noisy: wn > 1e-9 ? { mean: mn, std: Math.max(floor, Math.sqrt(vn / wn)) } : fit.noisy,
    };
  }
  return fit.clean.mean <= fit.noisy.mean ? fit : { clean: fit.noisy, noisy: fit.clean };
}

/** The warm-up rule: the components' means are further apart than their pooled std. */
export function separated(fit: MixtureFit): boolean {
  return fit.noisy.mean - fit.clean.mean > Math.sqrt((fit.clean.std ** 2 + fit.noisy.std ** 2) / 2);
}

/** Layout of the running state: [fitted yet, separated yet, μ_c, σ_c, μ_n, σ_n]. */
export const MIXTURE_STATE_SIZE = 6;

/** The running fit, kept in a float32 state array (checkpointed and shared between replicas by the trainer). */
export class RunningLossMixture {
  readonly state = new Float32Array(MIXTURE_STATE_SIZE);

  constructor(private readonly opts: EmOptions & { momentum?: number } = {}) {}

  get fitted(): boolean {
    return this.state[0] === 1;
  }

  /** Still warming up: the fit has not separated yet. */
  get warmup(): boolean {
    return this.state[1] !== 1;
  }

  get fit(): MixtureFit {
    const s = this.state;
    return { clean: { mean: s[2], std: s[3] }, noisy: { mean: s[4], std: s[5] } };
  }

  /** One step's update from the batch's y and priors r; a batch without pixels leaves the fit as it was. */
  update(y: ArrayLike<number>, prior: ArrayLike<number>): MixtureFit {
    if (y.length === 0) return this.fit;
    const start = this.fitted ? this.fit : initialFit(y, this.opts.sigmaFloor);
    const fitted = emFit(y, prior, start, this.opts);
    const m = this.fitted ? (this.opts.momentum ?? 0.9) : 0;
    const s = this.state;
    const blend = (old: number, v: number) => m * old + (1 - m) * v;
    s.set([1, s[1], blend(s[2], fitted.clean.mean), blend(s[3], fitted.clean.std), blend(s[4], fitted.noisy.mean), blend(s[5], fitted.noisy.std)]);
    if (separated(this.fit)) s[1] = 1;
    return this.fit;
  }
}

/** The per-pixel terms of one step, as tensors [B, H, W] (0 off the target pixels). */
export interface LossMixtureTerms {
  /** γ, detached. */
  gamma: tf.Tensor3D;
  /** log f(y | x), with gradient to r through `logR`. */
  logLikelihood: tf.Tensor3D;
}

/**
 * The tensor side for one step: reads ℓ (detached) and r to the host, updates the running fit, and returns γ
 * and log f(y | x) (through log r and log(1 − r), so that L_ψ's gradient reaches the rectifier) with host
 * statistics for events. `mask` marks the valid target pixels; `logR` gives log r and log(1 − r) as tensors.
 */
export function lossMixtureStep(
  mixture: RunningLossMixture, ce: tf.Tensor3D, r: tf.Tensor3D, mask: tf.Tensor3D, logR: [tf.Tensor, tf.Tensor],
): LossMixtureTerms & { fit: MixtureFit; n: number; meanGamma: number; lowGammaShare: number; meanR: number } {
  const [ls, rs, ms] = [ce.dataSync(), r.dataSync(), mask.dataSync()];
  const idx: number[] = [];
  for (let i = 0; i < ms.length; i++) if (ms[i] > 0) idx.push(i);
  const y = Float64Array.from(idx, (i) => logLoss(ls[i]));
  const prior = Float64Array.from(idx, (i) => rs[i]);
  const fit = mixture.update(y, prior);
  const gamma = new Float32Array(ms.length);
  const logC = new Float32Array(ms.length);
  const logN = new Float32Array(ms.length);
  let [sumG, low, sumR] = [0, 0, 0];
  idx.forEach((i, j) => {
    const g = posterior(y[j], prior[j], fit);
    gamma[i] = g;
    logC[i] = gaussianLogPdf(y[j], fit.clean);
    logN[i] = gaussianLogPdf(y[j], fit.noisy);
    sumG += g;
    sumR += prior[j];
    if (g < 0.5) low++;
  });
  const n = idx.length;
  const shape = ce.shape;
  const terms = tf.tidy(() => {
    const a = tf.add(logR[0], tf.tensor(logC, shape));
    const b = tf.add(logR[1], tf.tensor(logN, shape));
    const ll = tf.mul(tf.logSumExp(tf.stack([a, b], 3), 3), mask) as tf.Tensor3D;
    return { gamma: tf.tensor(gamma, shape) as tf.Tensor3D, logLikelihood: ll };
  });
  return { ...terms, fit, n, meanGamma: n ? sumG / n : 0, lowGammaShare: n ? low / n : 0, meanR: n ? sumR / n : 0 };
}
