/**
 * The parts of a process that hold a port, a timer, a thread or a file, in
 * the order they started. `stopAll` stops them newest first, each once; one
 * that fails to stop does not keep the others running (the first error is
 * rethrown at the end). Used both by `stop()` and by a start that fails
 * half-way, so a broker that cannot start holds nothing and its process
 * exits.
 */
export class StartedParts {
  readonly #stops: Array<() => unknown> = [];
  #stopping: Promise<void> | undefined;

  /** Registers how to stop a part that has just started. */
  add(stop: () => unknown): void {
    this.#stops.push(stop);
  }

  stopAll(): Promise<void> {
    return (this.#stopping ??= (async () => {
      let first: unknown;
      for (const stop of this.#stops.reverse()) {
        try {
          await stop();
        } catch (err) {
          first ??= err;
        }
      }
      if (first !== undefined) throw first;
    })());
  }
}
