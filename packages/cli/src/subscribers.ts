/**
 * Subscribers of the event stream (DESIGN §3): a progress bar on a TTY, a JSONL log always, and the
 * history the training-curve PNG and the end-of-run summary are drawn from. None of them touches the loop.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { ofType, type Ir2fEvent } from '@ir2f/core';
import { Subscription, type Observable } from 'rxjs';

/** Every event as one JSON line; returns a function that flushes and closes the file. */
export function jsonlLog(events$: Observable<Ir2fEvent>, file: string): () => Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const out = createWriteStream(file, { flags: 'a' });
  const sub = events$.subscribe((e) => out.write(`${JSON.stringify(e)}\n`));
  return () => {
    sub.unsubscribe();
    return new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  };
}

export interface History {
  steps: { step: number; losses: Record<string, number>; lr: number; ms: number }[];
  evals: { step: number; model: 'student' | 'teacher'; miou: number }[];
  /**
   * Pseudo-label reliability over steps: the pseudo-labeler's mean weight q, the rectifier's mean r, the RMM's
   * mean posterior γ (each where its event came), so that a collapse (r or γ → 1 while q is small) shows.
   */
  reliability: { step: number; q?: number; r?: number; gamma?: number }[];
}

export function recordHistory(events$: Observable<Ir2fEvent>): { history: History; subscription: Subscription } {
  const history: History = { steps: [], evals: [], reliability: [] };
  const at = (step: number) => {
    let last = history.reliability.at(-1);
    if (last?.step !== step) history.reliability.push(last = { step });
    return last;
  };
  const subscription = events$.subscribe((e) => {
    if (e.type === 'step') history.steps.push({ step: e.step, losses: e.losses, lr: e.lr, ms: e.ms });
    if (e.type === 'eval') history.evals.push({ step: e.step, model: e.model, miou: e.miou });
    if (e.type === 'pseudo-labels') at(e.step).q = e.keptFraction;
    if (e.type === 'rectifier') at(e.step).r = e.mean;
    if (e.type === 'rmm') Object.assign(at(e.step), { gamma: e.meanGamma, r: e.meanR });
  });
  return { history, subscription };
}

const fmtLoss = (losses: Record<string, number>) =>
  Object.entries(losses).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${v.toFixed(3)}`).join(' ');

/**
 * A progress bar (step, losses, it/s, ETA) on a TTY; elsewhere a line every `every` steps and each eval,
 * so CI logs stay short.
 */
export function progress(events$: Observable<Ir2fEvent>, opts: { tty: boolean; log: (line: string) => void; every?: number }): Subscription {
  const subs = new Subscription();
  let bar: cliProgress.SingleBar | undefined;
  let last = '';
  subs.add(events$.pipe(ofType('run-start')).subscribe((e) => {
    if (opts.tty) {
      bar = new cliProgress.SingleBar({
        format: 'train |{bar}| {value}/{total} | {losses} | {speed} it/s | ETA {eta_formatted}',
        hideCursor: true, clearOnComplete: false, etaBuffer: 20,
      }, cliProgress.Presets.shades_classic);
      bar.start(e.steps, e.startStep ?? 0, { losses: '', speed: '—' });
    }
  }));
  subs.add(events$.pipe(ofType('step')).subscribe((e) => {
    last = fmtLoss(e.losses);
    if (bar) bar.update(e.step, { losses: last, speed: (1000 / e.ms).toFixed(2) });
    else if (e.step % (opts.every ?? 50) === 0 || e.step === 1) {
      opts.log(`step ${e.step}  ${last}  lr ${e.lr.toExponential(2)}  ${e.ms.toFixed(0)} ms/it`);
    }
  }));
  subs.add(events$.pipe(ofType('eval')).subscribe((e) => {
    const line = `eval @${e.step} ${e.model}: mIoU ${(e.miou * 100).toFixed(1)}`;
    if (bar) {
      bar.stop();
      opts.log(line);
      bar.start(bar.getTotal(), e.step, { losses: last });
    } else opts.log(line);
  }));
  subs.add(events$.pipe(ofType('warning')).subscribe((e) => opts.log(`warning (${e.code}): ${e.message}`)));
  subs.add(events$.pipe(ofType('replicas')).subscribe((e) => opts.log(
    `replicas: ${e.workers} from step ${e.step} (timed: one ${Math.round(e.msPerStep.one)} ms a step, two ${Math.round(e.msPerStep.two)})`)));
  subs.add(events$.pipe(ofType('run-end')).subscribe(() => bar?.stop()));
  return subs;
}

/**
 * Progress of the data check before step 1: a bar per split on a TTY, else one line per split when it is
 * done.
 */
export function checkProgress(opts: { tty: boolean; log: (line: string) => void }): (split: string, done: number, total: number) => void {
  let bar: cliProgress.SingleBar | undefined;
  return (split, done, total) => {
    if (opts.tty) {
      if (done === 1 || !bar) {
        bar?.stop();
        bar = new cliProgress.SingleBar({ format: `check ${split.padEnd(6)} |{bar}| {value}/{total} files`, hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic);
        bar.start(total, 0);
      }
      bar.update(done);
      if (done === total) {
        bar.stop();
        bar = undefined;
      }
    } else if (done === total) {
      opts.log(`checked ${total} ${split} file${total === 1 ? '' : 's'}`);
    }
  };
}
