/**
 * The typed event stream (DESIGN §3). Events carry numbers and small arrays, never live tensors, so any
 * subscriber (progress bar, JSONL log, PNG snapshots, a user's early stopping) can hold on to them.
 */
import { Observable, Subject } from 'rxjs';
import type { EventBus } from './contracts.js';
import type { BackendInfo } from '@ir2f/runtime';

/** Bumped when an event's shape changes incompatibly. */
export const EVENT_SCHEMA_VERSION = 1;

export interface SmallMap {
  height: number;
  width: number;
  /** Row-major values, length height·width. */
  values: number[];
}

export type Ir2fEventInput =
  | {
      type: 'run-start'; config: unknown; backend: BackendInfo; seed: number; steps: number;
      /** Steps already done (a resumed run). */
      startStep?: number;
    }
  | {
      type: 'step'; step: number; losses: Record<string, number>; lr: number; ms: number;
      /** Phase times (ms) when the run is profiled. */
      phases?: Record<string, number>;
    }
  | { type: 'pseudo-labels'; step: number; keptFraction: number; meanConfidence: number }
  | {
      type: 'rectifier'; step: number; mean: number;
      /** r̄: mean r over the pixels that carry weight (q > 0), the divisor of §5.1.7's redistribution. */
      rBar?: number;
      p10: number; p50: number; p90: number;
      /** Share of pixels with r < 0.5. */
      lowShare: number; map?: SmallMap;
    }
  | {
      type: 'eval'; step: number; model: 'student' | 'teacher'; miou: number;
      /** IoU per class; null for classes absent from both prediction and truth. */
      perClassIoU: (number | null)[]; classNames?: string[];
    }
  | {
      type: 'rmm'; step: number;
      /** Mean posterior responsibility γ and mean r over the target pixels of the mixed image; L_RMM (v1) or L_ψ (v2). */
      meanGamma: number; meanR: number; loss: number;
      /** Share of those pixels with γ < 0.5. */
      lowGammaShare?: number;
      /** Mean of the pseudo-labeler's weight q over them. */
      meanQ?: number;
      /** The fitted loss-mixture components (v2: Gaussians on log ℓ), clean first. */
      components?: { clean: { mean: number; std: number }; noisy: { mean: number; std: number } };
      /** v2: the fit has not separated yet, so the student's weight is q and ψ trains on L_cal only. */
      warmup?: boolean;
    }
  | {
      /** The replica plan a run with `parallel.auto` chose after timing both (median ms a step of each). */
      type: 'replicas'; step: number; workers: 1 | 2; msPerStep: { one: number; two: number };
    }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'warning'; code: string; message: string; step?: number }
  | { type: 'run-end'; step: number; reason: 'completed' | 'interrupted' | 'failed'; ms: number; error?: string };

/** An event as delivered: stamped with the schema version and the emission time (ms since epoch). */
export type Ir2fEvent = Ir2fEventInput & { v: number; time: number };

export type Ir2fEventType = Ir2fEvent['type'];
export type EventOf<T extends Ir2fEventType> = Extract<Ir2fEvent, { type: T }>;

/** The default `EventBus`: an RxJS `Subject`; `events$` is its read-only side. */
export class RxEventBus implements EventBus {
  private readonly subject = new Subject<Ir2fEvent>();
  readonly events$: Observable<Ir2fEvent> = this.subject.asObservable();

  emit(event: Ir2fEventInput): void {
    this.subject.next({ ...event, v: EVENT_SCHEMA_VERSION, time: Date.now() } as Ir2fEvent);
  }

  complete(): void {
    this.subject.complete();
  }
}

/** Narrow a stream to one event type, typed. */
export function ofType<T extends Ir2fEventType>(type: T) {
  return (source: Observable<Ir2fEvent>): Observable<EventOf<T>> =>
    new Observable<EventOf<T>>((sub) =>
      source.subscribe({
        next: (e) => {
          if (e.type === type) sub.next(e as EventOf<T>);
        },
        error: (err) => sub.error(err),
        complete: () => sub.complete(),
      }));
}
