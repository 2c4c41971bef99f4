import test from 'ava';
import { firstValueFrom, toArray } from 'rxjs';
import { EVENT_SCHEMA_VERSION, ofType, RxEventBus, type Ir2fEvent } from '@ir2f/core';

test('the event bus streams typed, stamped events and completes', async (t) => {
  const bus = new RxEventBus();
  const all = firstValueFrom(bus.events$.pipe(toArray()));
  const steps = firstValueFrom(bus.events$.pipe(ofType('step'), toArray()));
  bus.emit({ type: 'step', step: 1, losses: { ce: 0.7 }, lr: 1e-3, ms: 12 });
  bus.emit({ type: 'warning', code: 'W', message: 'careful' });
  bus.emit({ type: 'step', step: 2, losses: { ce: 0.6 }, lr: 1e-3, ms: 11 });
  bus.complete();
  const events: Ir2fEvent[] = await all;
  t.deepEqual(events.map((e) => e.type), ['step', 'warning', 'step']);
  t.true(events.every((e) => e.v === EVENT_SCHEMA_VERSION && typeof e.time === 'number'));
  const s = await steps;
  t.deepEqual(s.map((e) => e.losses.ce), [0.7, 0.6]);
  t.notThrows(() => JSON.stringify(events));
});
