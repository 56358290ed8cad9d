export * from './rows.ts';
export * from './errors.ts';
export type * from './storage.ts';
