import type { RequestRow } from './repository.ts';

import type { DecisionEventType } from '../wire/events.ts';

export { DECISION_EVENTS, type DecisionEventType } from '../wire/events.ts';

/**
 * Receives every decision inside the transaction that made it, so a durable
 * outbox can write its event atomically with the state change. `record`
 * must be synchronous and use the same database connection.
 */
export interface DecisionSink {
  record(request: RequestRow, type: DecisionEventType, at: number): void;
}

export const noDecisionSink: DecisionSink = { record: () => {} };
