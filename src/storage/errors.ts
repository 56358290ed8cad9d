/**
 * Engine-neutral storage errors. An engine translates its own codes into
 * these, so nothing outside src/storage/ tests an engine's error codes or
 * message text: HTTP answers 503 with Retry-After to {@link StorageBusyError}
 * and {@link StorageUnavailableError},
 * and the verbs recognise {@link StorageUniqueError} where a uniqueness rule
 * decides the outcome (a replayed Idempotency-Key, a second credential).
 */
export class StorageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The database could not be had within the wait (another writer held it): retry later. */
export class StorageBusyError extends StorageError {}

/**
 * The database could not be reached, or the connection was lost (a network
 * engine: PostgreSQL down, restarting, or refusing connections). The write,
 * if any, is in doubt only for a lost COMMIT; otherwise nothing was changed.
 * HTTP answers 503 with Retry-After, as for {@link StorageBusyError}.
 */
export class StorageUnavailableError extends StorageError {}

/** A uniqueness rule refused the write (see the rules in storage.ts). */
export class StorageUniqueError extends StorageError {}

/** A transaction's repositories were used after it ended (a callback that kept `tx`). */
export class TransactionEndedError extends StorageError {
  constructor() {
    super('the transaction this call belongs to has already ended');
  }
}
