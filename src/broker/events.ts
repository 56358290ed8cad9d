import type { RequestRow } from '../storage/rows.ts';
import type { Transaction } from '../storage/storage.ts';

import type { DecisionEventType } from '../wire/events.ts';

export { DECISION_EVENTS, type DecisionEventType } from '../wire/events.ts';

/**
 * Receives every decision inside the transaction that made it, so a durable
 * outbox can write its event atomically with the state change. `record`
 * writes through the transaction it is given (`tx`), and awaits nothing else.
 */
export interface DecisionSink {
  record(tx: Transaction, request: RequestRow, type: DecisionEventType, at: number): Promise<void>;
}

export const noDecisionSink: DecisionSink = { record: () => Promise.resolve() };
