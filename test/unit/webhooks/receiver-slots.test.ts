import { describe, expect, it, vi } from 'vitest';
import { createReceiverSlots } from '../../../src/webhooks/receiver-slots.ts';

const A = 'http://a.example/hooks/agent';
const B = 'http://b.example/events';

describe('receiver slots', () => {
  it('gives no URL more than its per-target share, and the other URLs the rest of the slots', () => {
    const slots = createReceiverSlots({ concurrency: 4, perTarget: 2, wake: () => {} });
    expect([slots.free(), slots.room(A), slots.room(B)]).toEqual([4, 2, 2]);
    slots.take(A);
    slots.take(A);
    expect([slots.free(), slots.room(A), slots.room(B)]).toEqual([2, 0, 2]);
    slots.take(B);
    expect([slots.inFlight(), slots.free(), slots.room(A), slots.room(B)]).toEqual([3, 1, 0, 1]);
    slots.give(A);
    expect([slots.inFlight(), slots.free(), slots.room(A), slots.room(B)]).toEqual([2, 2, 1, 1]);
    slots.give(A);
    slots.give(B);
    expect([slots.inFlight(), slots.free(), slots.room(A), slots.room(B)]).toEqual([0, 4, 2, 2]);
  });

  it('wakes the claimer once half a share has come free, and a single freed slot only after the coalescing delay', async () => {
    const wake = vi.fn();
    const slots = createReceiverSlots({ concurrency: 8, perTarget: 4, wake, coalesceMs: 20 });
    for (let i = 0; i < 4; i++) slots.take(A);
    slots.take(B);

    slots.give(A);
    slots.slotFreed();
    expect(wake).not.toHaveBeenCalled();
    await vi.waitFor(() => expect(wake).toHaveBeenCalledTimes(1));

    slots.claiming();
    slots.give(A);
    slots.slotFreed();
    expect(wake).toHaveBeenCalledTimes(1);
    slots.give(A);
    slots.slotFreed(); // two freed since the claim: half of perTarget
    expect(wake).toHaveBeenCalledTimes(2);
    slots.close(); // the delayed wake the first of the two scheduled
  });

  it('wakes at once when nothing is left in flight', () => {
    const wake = vi.fn();
    const slots = createReceiverSlots({ concurrency: 8, perTarget: 8, wake, coalesceMs: 60_000 });
    slots.take(A);
    slots.give(A);
    slots.slotFreed();
    expect(wake).toHaveBeenCalledTimes(1);
  });

  it('close() cancels a pending delayed wake', async () => {
    const wake = vi.fn();
    const slots = createReceiverSlots({ concurrency: 8, perTarget: 8, wake, coalesceMs: 1 });
    slots.take(A);
    slots.take(A);
    slots.give(A);
    slots.slotFreed();
    slots.close();
    // A later timer than the coalescing one has fired, so the wake would have been seen.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(wake).not.toHaveBeenCalled();
  });
});
