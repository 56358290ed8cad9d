// Types of bin/dist-state.mjs, for the TypeScript that imports it (tests).
export const ROOT: string;
export const SRC: string;
export const DIST: string;
export const BUILD_STAMP: string;
export function distState(): 'fresh' | 'stale' | 'missing';
