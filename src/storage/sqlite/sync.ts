/**
 * The synchronous shape of an asynchronous repository: what the SQLite
 * engine implements (better-sqlite3 is synchronous), each method returning
 * what the interface's promise resolves to. storage.ts wraps it.
 */
export type Sync<T> = { [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R : T[K] };
