import { pooledRandomBytes } from './random-pool.ts';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

/** Generates identifiers; injected so tests can predict them if they need to. */
export interface IdGenerator {
  /** `prefix_` + 26 lower-case characters: 10 of time (sortable), 16 random (80 bits). */
  next(prefix: 'req' | 'cred' | 'evt' | 'agt' | 'aud' | 'vote' | 'apr'): string;
}

export function createIdGenerator(now: () => number = Date.now): IdGenerator {
  return {
    next(prefix) {
      let t = now();
      let time = '';
      for (let i = 0; i < 10; i++) {
        time = ALPHABET[t % 32] + time;
        t = Math.floor(t / 32);
      }
      const rand = pooledRandomBytes(16);
      let tail = '';
      for (let i = 0; i < 16; i++) tail += ALPHABET[rand[i]! % 32];
      return `${prefix}_${time}${tail}`;
    },
  };
}

/** Shape check for ids coming from URLs (vault policy names derive from them). */
export function isId(prefix: string, value: string): boolean {
  return new RegExp(`^${prefix}_[0-9a-z]{26}$`).test(value);
}
