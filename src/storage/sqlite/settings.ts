import type { ServiceSettingsRow } from '../rows.ts';
import type { SettingsRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteSettings(db: Db): Sync<SettingsRepository> {
  const installation = db.prepare(`SELECT value FROM settings WHERE key = 'installation_id'`).pluck();
  const record = db.prepare(`INSERT INTO service_settings (id, settings, recorded_at, pid) VALUES (1, @settings, @recorded_at, @pid)
    ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, recorded_at = excluded.recorded_at, pid = excluded.pid`);
  const read = db.prepare('SELECT settings, recorded_at, pid FROM service_settings WHERE id = 1');
  return {
    installationId() {
      const id = installation.get() as string | undefined;
      if (id === undefined) throw new Error('the database has no installation id (migration 0011 not applied)');
      return id;
    },
    recordService(row) {
      record.run(row);
    },
    readService: () => read.get() as ServiceSettingsRow | undefined,
  };
}
