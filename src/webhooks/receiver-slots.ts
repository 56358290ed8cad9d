/** After a freed slot, the next claim waits this long for more slots to free, so that one transaction leases several rows. */
export const CLAIM_COALESCE_MS = 2;

export interface ReceiverSlotsOptions {
  /** Attempts in flight in all. */
  concurrency: number;
  /** Attempts in flight to one URL: a hung receiver holds no more slots than this, the rest go on serving others. */
  perTarget: number;
  /** Called when it is time to claim again (slots came free). */
  wake: () => void;
  coalesceMs?: number;
}

export interface ReceiverSlots {
  /** Attempts in flight now. */
  inFlight(): number;
  /** Slots free in all. */
  free(): number;
  /** Slots still free for `url` (its share of them, not counting the total). */
  room(url: string): number;
  /** An attempt to `url` takes a slot. */
  take(url: string): void;
  /** The attempt to `url` is over: its slot is free again (call {@link slotFreed} once its outcome is queued). */
  give(url: string): void;
  /** Wakes the claimer once several slots have come free, or shortly after the first, or at once when none is taken. */
  slotFreed(): void;
  /** A claim is under way: the freed slots are being filled. */
  claiming(): void;
  /** Cancels a pending wake. */
  close(): void;
}

/**
 * The dispatcher's slots: attempts in flight in all and per receiver URL.
 * Rows are claimed only for free slots, and no URL gets more than
 * `perTarget` of them, so a backlog for a hung receiver cannot take them
 * all. A freed slot wakes the claimer after a short delay, or at once when
 * half a target's share has come free or nothing is in flight, so that one
 * claim leases several rows.
 */
export function createReceiverSlots(opts: ReceiverSlotsOptions): ReceiverSlots {
  const { concurrency, perTarget, wake } = opts;
  const coalesceMs = opts.coalesceMs ?? CLAIM_COALESCE_MS;
  let inFlight = 0;
  const perUrl = new Map<string, number>();
  let freedSinceClaim = 0;
  let coalesce: NodeJS.Timeout | undefined;

  return {
    inFlight: () => inFlight,
    free: () => concurrency - inFlight,
    room: (url) => perTarget - (perUrl.get(url) ?? 0),
    take(url) {
      inFlight++;
      perUrl.set(url, (perUrl.get(url) ?? 0) + 1);
    },
    give(url) {
      inFlight--;
      const n = perUrl.get(url)! - 1;
      if (n > 0) perUrl.set(url, n);
      else perUrl.delete(url);
    },
    slotFreed() {
      freedSinceClaim++;
      if (freedSinceClaim >= Math.max(1, Math.floor(perTarget / 2)) || inFlight === 0) {
        wake();
      } else if (!coalesce) {
        coalesce = setTimeout(() => {
          coalesce = undefined;
          wake();
        }, coalesceMs);
      }
    },
    claiming() {
      freedSinceClaim = 0;
    },
    close() {
      if (coalesce) clearTimeout(coalesce);
      coalesce = undefined;
    },
  };
}
