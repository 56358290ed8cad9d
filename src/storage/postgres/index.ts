export { IDLE_IN_TRANSACTION_TIMEOUT_MS, LOCK_TIMEOUT_MS, WRITE_LOCK_KEY } from './pool.ts';
export { createPostgresStorage, openPostgresStorage, postgresPool, type PostgresStorageOptions } from './storage.ts';
