import type { ServiceSettingsRow } from '../rows.ts';
import type { SettingsRepository } from '../storage.ts';
import { one, sql, type Exec } from './exec.ts';

const S = {
  installation: sql('settings_installation', `SELECT value FROM settings WHERE key = 'installation_id'`),
  record: sql('settings_record_service', `INSERT INTO service_settings (id, settings, recorded_at, pid) VALUES (1, $1, $2, $3)
    ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, recorded_at = excluded.recorded_at, pid = excluded.pid`),
  read: sql('settings_read_service', 'SELECT settings, recorded_at, pid FROM service_settings WHERE id = 1'),
};

export function pgSettings(x: Exec): SettingsRepository {
  return {
    async installationId() {
      const row = await one<{ value: string }>(x.read(S.installation));
      if (row === undefined) throw new Error('the database has no installation id (migration 0001 not applied)');
      return row.value;
    },
    async recordService(row) {
      await x.write(S.record, [row.settings, row.recorded_at, row.pid]);
    },
    readService: () => one<ServiceSettingsRow>(x.read(S.read)),
  };
}
