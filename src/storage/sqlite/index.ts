export { BUSY_TIMEOUT_MS, looseDatabaseModes, type Db, type OpenOptions } from './open.ts';
export { startCheckpointer, type CheckpointerOptions } from './checkpointer.ts';
export { createSqliteStorage, openSqliteStorage, sqliteDatabase } from './storage.ts';
