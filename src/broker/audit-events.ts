/*
 * The audit event names. The list lives with the storage interface's rows
 * (src/storage/rows.ts: storage imports nothing of the broker, and its
 * audit repository takes these names); re-exported here for the broker.
 */
export { AUDIT_EVENTS, type AuditEvent } from '../storage/rows.ts';
