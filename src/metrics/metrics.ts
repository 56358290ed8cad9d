/**
 * Prometheus metrics of one broker (prom-client). Every broker instance has
 * its own Registry — never prom-client's global one — so several brokers can
 * run in one process (the tests do) without mixing their numbers.
 *
 * Hooks for other modules:
 * - the broker verbs call {@link BrokerMetrics.requestOutcome} and
 *   {@link BrokerMetrics.issuance};
 * - {@link instrumentVault} times every Vault call;
 * - {@link metricsDecisionSink} counts timeouts, revocations and expiries;
 * - the webhook dispatcher calls {@link BrokerMetrics.webhookDelivery} for
 *   each attempt's outcome, and may replace the outbox gauges' source with
 *   {@link BrokerMetrics.setOutboxSource} (by default they are read from the
 *   `webhook_outbox` table on each scrape);
 * - approvals and denials by people, whichever process recorded them (the
 *   Telegram bot in the service, or `jit approve` / `jit deny` on the
 *   command line), are read from the `votes` table on each scrape.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Storage } from '../storage/storage.ts';

export type RequestResource = 'vault' | 'gate';
export type WebhookOutcome = 'delivered' | 'retried' | 'dead';

/** Outbox figures for the gauges (a figure left out reads 0). */
export interface OutboxFigures {
  /** Events not yet settled (pending or being delivered). */
  depth?: number;
  /** Events that gave up and wait for an operator. */
  dead?: number;
}

export interface BrokerMetrics {
  readonly registry: Registry;
  /** `Content-Type` of {@link BrokerMetrics.render}'s output. */
  readonly contentType: string;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  /** Every metric as prom-client JSON, brought up to date as for render. */
  snapshot(): Promise<MetricObjectWithValues<MetricValue<string>>[]>;
  /** How a `POST /jit/request` ended: `issued`, `pending`, `replayed`, or the lower-cased error code (`rate_limited`, `not_covered`, `vault_unavailable`, …). */
  requestOutcome(resource: RequestResource, tier: number, outcome: string): void;
  /** A decision recorded in this process (timeouts, revocations, expiries). */
  decision(resource: RequestResource, tier: number, decision: string): void;
  /** Time to mint one credential (Vault calls included), by outcome `issued` or `failed`. */
  issuance(resource: RequestResource, seconds: number, outcome: 'issued' | 'failed'): void;
  /** One Vault call: its duration, and the error kind if it failed. */
  vaultCall(operation: string, seconds: number, errorKind?: string): void;
  /** One HTTP request: `route` is the matched route pattern, never the raw path. */
  http(method: string, route: string, status: number, seconds: number): void;
  /** For the webhook dispatcher: the outcome of one delivery attempt. */
  webhookDelivery(outcome: WebhookOutcome, target: string): void;
  /** For the webhooks module: where the outbox gauges come from (called on each scrape). */
  setOutboxSource(source: () => OutboxFigures | Promise<OutboxFigures>): void;
  /** Where the open decision streams gauge comes from (this process's stream hub; called on each scrape). */
  setStreamSource(source: () => number): void;
}

export interface MetricsOptions {
  /** The broker's database: outbox gauges and approval decisions are read from it on scrape. */
  storage?: Storage;
  /** Node.js process metrics (CPU, memory, event-loop lag, GC) in the same registry; default true. */
  processMetrics?: boolean;
}

/** Upper bounds (seconds) for time-to-decision of a person: 5 s … 1 h. */
const APPROVAL_BUCKETS = [5, 15, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600];
/** Upper bounds (seconds) for HTTP, Vault and issuance latencies: 1 ms … 10 s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Creates the metrics of one broker, in a registry of its own. */
export function createMetrics(o: MetricsOptions = {}): BrokerMetrics {
  const registry = new Registry();
  const registers = [registry];
  if (o.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const requests = new Counter({
    name: 'jit_requests_total',
    help: 'POST /jit/request by resource, tier (the tier it is handled at; the requested tier when refused) and outcome',
    labelNames: ['resource', 'tier', 'outcome'] as const,
    registers,
  });
  const decisions = new Counter({
    name: 'jit_decisions_total',
    help: 'Decisions on requests: approved and denied by people (from any process), timed_out, revoked and expired (by this broker)',
    labelNames: ['resource', 'tier', 'decision'] as const,
    registers,
  });
  const approvalLatency = new Histogram({
    name: 'jit_approval_latency_seconds',
    help: 'Time from a tier-2/3 request being created to the approval or denial that decided it',
    labelNames: ['resource', 'tier', 'decision'] as const,
    buckets: APPROVAL_BUCKETS,
    registers,
  });
  const issuance = new Histogram({
    name: 'jit_credential_issuance_seconds',
    help: 'Time to mint a credential once a request is approved (Vault calls included)',
    labelNames: ['resource', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const vaultDuration = new Histogram({
    name: 'jit_vault_request_duration_seconds',
    help: 'Duration of calls to Vault by operation, failed ones included',
    labelNames: ['operation'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const vaultErrors = new Counter({
    name: 'jit_vault_request_errors_total',
    help: 'Failed calls to Vault by operation and error kind',
    labelNames: ['operation', 'kind'] as const,
    registers,
  });
  const httpRequests = new Counter({
    name: 'jit_http_requests_total',
    help: 'HTTP requests by method, matched route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: 'jit_http_request_duration_seconds',
    help: 'HTTP request duration by method and matched route',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const webhookDeliveries = new Counter({
    name: 'jit_webhook_deliveries_total',
    help: 'Decision webhook delivery attempts by outcome (delivered, retried, dead) and target',
    labelNames: ['outcome', 'target'] as const,
    registers,
  });

  let outboxSource: (() => OutboxFigures | Promise<OutboxFigures>) | undefined = o.storage ? storageOutboxSource(o.storage) : undefined;
  /** Read once per render, before the registry is collected; both gauges show this reading. */
  let outbox: OutboxFigures = {};
  const readOutbox = async (): Promise<void> => {
    try {
      outbox = (await outboxSource?.()) ?? {};
    } catch {
      outbox = {};
    }
  };
  new Gauge({
    name: 'jit_webhook_outbox_depth',
    help: 'Decision webhook events not yet delivered (pending or being delivered)',
    registers,
    collect() {
      this.set(outbox.depth ?? 0);
    },
  });
  new Gauge({
    name: 'jit_webhook_outbox_dead',
    help: 'Decision webhook events that gave up and wait for an operator (jit webhooks list --dead)',
    registers,
    collect() {
      this.set(outbox.dead ?? 0);
    },
  });

  let openStreams: () => number = () => 0;
  new Gauge({
    name: 'jit_decision_streams_open',
    help: 'Decision streams (GET /jit/requests/{id}/events) open on this broker',
    registers,
    collect() {
      this.set(openStreams());
    },
  });

  const scanVotes = o.storage ? votesScanner(o.storage) : undefined;
  // Both metrics fed by the votes table are brought up to date before either is rendered.
  const syncVotes = async () => {
    for (const d of (await scanVotes?.()) ?? []) {
      const labels = { resource: d.resource, tier: String(d.tier), decision: d.decision };
      decisions.inc(labels);
      approvalLatency.observe(labels, Math.max(0, d.seconds));
    }
  };

  return {
    registry,
    contentType: registry.contentType,
    async render() {
      await syncVotes();
      await readOutbox();
      return registry.metrics();
    },
    async snapshot() {
      await syncVotes();
      await readOutbox();
      return registry.getMetricsAsJSON();
    },
    requestOutcome(resource, tier, outcome) {
      requests.inc({ resource, tier: String(tier), outcome });
    },
    decision(resource, tier, decision) {
      decisions.inc({ resource, tier: String(tier), decision });
    },
    issuance(resource, seconds, outcome) {
      issuance.observe({ resource, outcome }, seconds);
    },
    vaultCall(operation, seconds, errorKind) {
      vaultDuration.observe({ operation }, seconds);
      if (errorKind !== undefined) vaultErrors.inc({ operation, kind: errorKind });
    },
    http(method, route, status, seconds) {
      httpRequests.inc({ method, route, status: String(status) });
      httpDuration.observe({ method, route }, seconds);
    },
    webhookDelivery(outcome, target) {
      webhookDeliveries.inc({ outcome, target });
    },
    setStreamSource(source) {
      openStreams = source;
    },
    setOutboxSource(source) {
      outboxSource = source;
    },
  };
}

/** The outbox gauges straight from the table: two index range counts, each as long as what it counts. */
function storageOutboxSource(storage: Storage): () => Promise<OutboxFigures> {
  return async () => ({ depth: await storage.outbox.pendingCount(), dead: await storage.outbox.deadCount() });
}

interface VoteDecision {
  resource: RequestResource;
  tier: number;
  decision: 'approved' | 'denied';
  seconds: number;
}

/**
 * Reads the approve/deny votes cast since the last call (by rowid, so each
 * scrape reads only what is new) and returns those that decided their
 * request: the vote whose time is the request's decision time. Votes cast
 * before the broker started are not counted.
 */
function votesScanner(storage: Storage): () => Promise<VoteDecision[]> {
  // Votes cast before the broker started are not counted.
  const start = storage.votes.newestSeq().catch(() => 0);
  let last: number | undefined;
  const scan = async (): Promise<VoteDecision[]> => {
    try {
      last ??= await start;
      const rows = await storage.votes.decisionsAfter(last, 10_000);
      const out: VoteDecision[] = [];
      for (const r of rows) {
        last = r.seq;
        if (r.decided_at !== r.at || r.status === 'pending' || r.status === 'timed_out') continue;
        out.push({ resource: r.resource, tier: r.tier, decision: r.decision === 'approve' ? 'approved' : 'denied', seconds: (r.decided_at - r.created_at) / 1000 });
      }
      return out;
    } catch {
      // A database that is closed: nothing to report.
      return [];
    }
  };
  // One scan at a time: two overlapping scrapes would both read from the same `last` and count each vote twice.
  let queue: Promise<unknown> = Promise.resolve();
  return () => {
    const next = queue.then(scan);
    queue = next;
    return next;
  };
}
