import type { DecisionEventType } from '../wire/events.ts';
import type { RequestRow } from './rows.ts';
import type { Transaction } from './storage.ts';

/**
 * Receives every decision inside the transaction that made it, so a durable
 * outbox can write its event atomically with the state change. `record`
 * writes through the transaction it is given (`tx`), and awaits nothing else.
 *
 * Declared here, below the broker, so that metrics/ (which counts decisions)
 * and webhooks/ implement it without importing src/broker.
 */
export interface DecisionSink {
  record(tx: Transaction, request: RequestRow, type: DecisionEventType, at: number): Promise<void>;
}
