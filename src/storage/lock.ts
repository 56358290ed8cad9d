import { StorageBusyError } from './errors.ts';

/**
 * An in-process FIFO mutex: who holds the process's one database
 * connection for a transaction. Taking it when free is synchronous (no
 * queueing, no timer); a waiter queues in arrival order and gives up with
 * {@link StorageBusyError} after `waitMs`, as a transaction waiting for
 * another process's write lock does.
 */
export class FifoLock {
  #held = false;
  readonly #waiters: { grant: () => void; timer?: NodeJS.Timeout }[] = [];

  constructor(private readonly waitMs: number) {}

  get held(): boolean {
    return this.#held;
  }

  /** How many callers wait in the queue. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Takes the lock now if it is free; false if someone holds it. */
  tryAcquire(): boolean {
    if (this.#held) return false;
    this.#held = true;
    return true;
  }

  /** Resolves once the lock is this caller's. */
  acquire(): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: { grant: () => void; timer?: NodeJS.Timeout } = { grant: resolve };
      waiter.timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i < 0) return;
        this.#waiters.splice(i, 1);
        reject(new StorageBusyError(`the database stayed busy for ${this.waitMs} ms (a transaction of this process held it)`));
      }, this.waitMs);
      waiter.timer.unref?.();
      this.#waiters.push(waiter);
    });
  }

  /** Hands the lock to the next waiter, or frees it. */
  release(): void {
    const next = this.#waiters.shift();
    if (!next) {
      this.#held = false;
      return;
    }
    clearTimeout(next.timer);
    next.grant();
  }
}
