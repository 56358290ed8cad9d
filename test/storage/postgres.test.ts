import { describe, expect, it } from 'vitest';
import { openPostgresStorage } from '../../src/storage/postgres/index.ts';
import { freshPostgresDatabase } from '../helpers/postgres.ts';
import { describeStorageConformance } from './conformance.ts';

describeStorageConformance('PostgreSQL, a fresh database', async () => {
  const storage = await openPostgresStorage(await freshPostgresDatabase());
  return { storage, dispose: () => storage.close() };
});
