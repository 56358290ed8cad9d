import { randomBytes } from 'node:crypto';
import { Api, Bot, BotError } from 'grammy';
import type { ApiClientOptions } from 'grammy';
import type { BrokerDeps } from '../broker/deps.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { TELEGRAM_WEBHOOK_PATH, validateTelegramConfig, type TelegramConfig } from './config.ts';
import { boundedRetry, callTimeout, describeTelegramError, sleep, type RetryOptions } from './errors.ts';
import { registerHandlers } from './handlers.ts';
import { pollForever, type BotLifetime } from './polling.ts';
import { createLeadership } from './leader.ts';
import { createTelegramStore } from './store.ts';
import { createSync } from './sync.ts';
import { createSyncScheduler } from './sync-scheduler.ts';
import { createWebhookHandler, registerWebhook } from './webhook.ts';

export interface ApprovalBotOptions {
  deps: BrokerDeps;
  /** Defaults to `deps.config.telegram`. */
  config?: TelegramConfig;
  /** Base URL Telegram reaches the broker at (webhook mode); defaults to `deps.config.publicUrl`. */
  publicUrl?: string;
  log?: Logger;
  clock?: Clock;
  /** Sync pass interval when nothing kicks it (default 3000 ms). */
  syncIntervalMs?: number;
  /** Long-poll `timeout` (default 30 s). */
  pollTimeoutSeconds?: number;
  /** Deadline of every other Bot API call (default 15 s). */
  callTimeoutSeconds?: number;
  /** Inline retries of interactive calls (answers, replies). */
  retry?: RetryOptions;
  /** Wait before restarting polling (or setWebhook) after it failed (default 5000 ms). */
  restartDelayMs?: number;
  /** First pause of the sync loop after a network error, doubling to 60 s (default 1000 ms). */
  errorBackoffMs?: number;
  /** A claim to post a message older than this may be taken over (default 60 s). */
  postLeaseMs?: number;
  /** The webhook answers Telegram after this long even if the update is still being handled (default 8000 ms). */
  webhookReplyTimeoutMs?: number;
  /** TTL of the `telegram:leader` lease (default JIT_NODE_LEASE); renewed every third of it. */
  leaderLeaseMs?: number;
}

export interface ApprovalBotStatus {
  mode: 'polling' | 'webhook';
  /** getMe succeeded and polling runs (or this broker stands by while another polls) / the webhook is registered. */
  ready: boolean;
  /** This broker holds `telegram:leader`: it polls (polling mode) and runs the sync passes (both modes). */
  leader: boolean;
  /** Epoch ms of the last sync pass that reached Telegram without error. */
  lastSyncOkAt: number | null;
  /** Set while Telegram is failing: log-safe detail of the last failure. */
  lastError: Record<string, unknown> | null;
}

export interface ApprovalBot {
  readonly mode: 'polling' | 'webhook';
  /** Resolves once the bot is connected (polling started, or webhook registered). */
  readonly ready: Promise<void>;
  /** Starts polling or registers the webhook, and the sync loop. Returns at once; Telegram being down never fails it. */
  start(): Promise<void>;
  /** Stops polling and the sync loop; waits for the pass under way. The webhook stays registered. */
  stop(): Promise<void>;
  /**
   * Runs a sync pass now (or right after the one under way): call it after
   * a request becomes pending or is decided elsewhere. Resolves when the
   * pass is done; never rejects.
   */
  kick(): Promise<void>;
  /**
   * `POST /telegram/webhook` (webhook.ts): checks the secret header (401), then hands the update to the bot.
   * The composition root mounts it on the HTTP app (main.ts; a worker forwards to the primary over IPC).
   */
  handleWebhook(request: Request): Promise<Response>;
  status(): ApprovalBotStatus;
}

/**
 * The Telegram approval bot (SPEC §7): posts every pending tier-2/3
 * request with Approve / Deny, applies taps through decideRequest, keeps
 * each message in step with its request, and serves /pending, /revoke and
 * /revokeall to approvers.
 *
 * Long polling unless `webhookSecret` is set, in which case it registers
 * `${publicUrl}/telegram/webhook` with that secret and the broker's HTTP
 * server must route that path to `handleWebhook`.
 *
 * Several brokers on one database: only the one holding the lease
 * `telegram:leader` (leader.ts) polls and runs the sync passes (posting
 * and editing the approval messages); the others stand by and take over
 * when its lease lapses. In webhook mode every broker handles the updates
 * it receives. A kick on a broker that is not the leader does nothing: the
 * leader's next pass (every `syncIntervalMs`) picks the change up.
 *
 * Nothing here can crash the broker: handler errors go to `bot.catch`,
 * polling restarts after failures, sync failures pause and retry, and no
 * promise is left to reject unhandled.
 */
export function createApprovalBot(options: ApprovalBotOptions): ApprovalBot {
  const { deps } = options;
  const config = options.config ?? deps.config.telegram;
  if (!config) throw new Error('createApprovalBot: Telegram is not configured (TELEGRAM_BOT_TOKEN is unset)');
  validateTelegramConfig(config);
  const log = (options.log ?? deps.log).child({ component: 'telegram' });
  const clock = options.clock ?? deps.clock;
  const publicUrl = (options.publicUrl ?? deps.config.publicUrl).replace(/\/+$/, '');
  const mode: 'polling' | 'webhook' = config.webhookSecret ? 'webhook' : 'polling';
  const token = config.botToken;
  const pollTimeoutSeconds = options.pollTimeoutSeconds ?? 30;
  const callTimeoutSeconds = options.callTimeoutSeconds ?? 15;
  const restartDelayMs = options.restartDelayMs ?? 5_000;

  const client: ApiClientOptions = {
    apiRoot: config.apiRoot.replace(/\/+$/, ''),
    // getUpdates holds the connection for the poll timeout; other calls get callTimeout().
    timeoutSeconds: pollTimeoutSeconds + callTimeoutSeconds,
  };
  const bot = new Bot(token, { client });
  bot.api.config.use(callTimeout(callTimeoutSeconds), boundedRetry(options.retry));
  const syncApi = new Api(token, client);
  syncApi.config.use(callTimeout(callTimeoutSeconds));

  const store = createTelegramStore(deps.storage);
  const state: ApprovalBotStatus = { mode, ready: false, leader: false, lastSyncOkAt: null, lastError: null };
  let stopped = false;
  let started = false;
  const abort = new AbortController();
  const lifetime: BotLifetime = {
    stopped: () => stopped,
    sleep: (ms) => sleep(ms, abort.signal),
  };
  const signal = () => abort.signal as unknown as Parameters<typeof bot.api.getMe>[0];
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const setReady = () => {
    if (!state.ready || (mode === 'polling' && leadership.isLeader())) {
      const what = mode === 'webhook' ? 'telegram: webhook registered' : leadership.isLeader() ? 'telegram: long polling started' : 'telegram: connected; standing by (another broker is the leader and polls)';
      log.info({ mode, bot: bot.botInfo.username }, what);
    }
    state.ready = true;
    markReady();
  };

  const sync = createSync({
    deps,
    store,
    api: syncApi,
    chatId: config.chatId,
    token,
    log,
    clock,
    postLeaseMs: options.postLeaseMs ?? 60_000,
    errorBackoffMs: options.errorBackoffMs ?? 1_000,
  });
  // Only the leader posts and edits: one message per request, edited once per change, whatever broker decided.
  const scheduler = createSyncScheduler({
    pass: () => (leadership.isLeader() ? sync.pass() : Promise.resolve({ posted: 0, edited: 0 })),
    log,
    token,
    intervalMs: options.syncIntervalMs ?? 3_000,
    health: state,
  });
  const kick = (): Promise<void> => (leadership.isLeader() ? scheduler.kick() : Promise.resolve());

  // ---- leadership (several brokers on one database) ------------------------------

  /** The polling loop of the current leadership term. */
  let term: { abort: AbortController; loop: Promise<void> } | undefined;
  const startPolling = () => {
    if (term || stopped || mode !== 'polling') return;
    const ended = new AbortController();
    const signal = AbortSignal.any([abort.signal, ended.signal]);
    const termLifetime: BotLifetime = { stopped: () => stopped || ended.signal.aborted, sleep: (ms) => sleep(ms, signal) };
    const loop = pollForever({ bot, log, token, lifetime: termLifetime, connect, onStart: setReady, pollTimeoutSeconds, restartDelayMs }).catch((err: unknown) => {
      log.error({ err: describeTelegramError(err, token) }, 'telegram: bot loop crashed');
    });
    term = { abort: ended, loop };
  };
  /** Ends the term's polling; resolves once getUpdates is no longer called. */
  const stopPolling = async () => {
    const t = term;
    if (!t) return;
    term = undefined;
    t.abort.abort();
    let done = false;
    void t.loop.finally(() => (done = true));
    while (!done) {
      if (bot.isRunning()) {
        try {
          await bot.stop();
        } catch (err) {
          log.debug({ telegram: describeTelegramError(err, token) }, 'telegram: could not confirm the last update while stopping');
        }
      }
      await Promise.race([t.loop, sleep(50)]);
    }
  };
  /** A broker that is not the leader (polling mode): connected (getMe) and ready to take over. */
  const standBy = async () => {
    while (!stopped && !state.ready && !leadership.isLeader()) {
      try {
        await connect();
        if (!leadership.isLeader()) setReady();
        return;
      } catch (err) {
        log.debug({ telegram: describeTelegramError(err, token) }, 'telegram: could not reach the Bot API while standing by');
        await lifetime.sleep(restartDelayMs);
      }
    }
  };
  let leadershipChange: Promise<void> = Promise.resolve();
  const leadership = createLeadership({
    storage: deps.storage,
    clock,
    log,
    holder: deps.nodeId ?? `bot_${randomBytes(8).toString('hex')}`,
    ttlMs: options.leaderLeaseMs ?? deps.config.nodeLeaseSeconds * 1000,
    onChange(leader) {
      state.leader = leader;
      leadershipChange = leadershipChange.then(async () => {
        if (leader) {
          startPolling();
          void scheduler.kick();
        } else {
          await stopPolling();
          if (mode === 'polling') void standBy();
        }
      });
    },
  });

  // ---- handlers -------------------------------------------------------------------

  const onBotError = (err: unknown) => {
    const inner = err instanceof BotError ? err.error : err;
    const updateId = err instanceof BotError ? err.ctx.update.update_id : undefined;
    log.error({ update_id: updateId, err: describeTelegramError(inner, token) }, 'telegram: error while handling an update');
    // Do not leave the tapping user with a spinner.
    if (err instanceof BotError && err.ctx.callbackQuery) {
      err.ctx
        .answerCallbackQuery({ text: 'Something went wrong in the broker (it is logged). Check the message or /pending before trying again.', show_alert: true })
        .catch(() => {});
    }
  };
  // Inside the boundary a handler's error is logged and answered, and never rejects bot.handleUpdate
  // (grammY's webhookCallback would leave such a rejection unhandled once it has answered on time).
  registerHandlers(bot.errorBoundary(onBotError), { deps, config, store, log, clock, token, kick: () => void kick() });
  bot.catch(onBotError);

  // ---- connecting -----------------------------------------------------------------

  async function init(): Promise<void> {
    if (!bot.isInited()) bot.botInfo = await bot.api.getMe(signal());
  }

  let commandsSet = false;
  async function registerCommandMenu(): Promise<void> {
    if (commandsSet) return;
    try {
      await bot.api.setMyCommands(
        [
          { command: 'pending', description: 'List requests awaiting approval' },
          { command: 'revoke', description: 'Revoke one request: /revoke ID [reason]' },
          { command: 'revokeall', description: 'Revoke every live credential' },
          { command: 'whoami', description: 'Show your Telegram user id and this chat id' },
        ],
        undefined,
        signal(),
      );
      commandsSet = true;
    } catch (err) {
      log.debug({ telegram: describeTelegramError(err, token) }, 'telegram: could not set the command menu');
    }
  }
  const connect = async () => {
    await init();
    await registerCommandMenu();
  };

  const handleWebhook = createWebhookHandler({
    bot: mode === 'webhook' ? bot : undefined,
    secret: config.webhookSecret,
    log,
    accepting: () => !stopped && bot.isInited(),
    replyTimeoutMs: options.webhookReplyTimeoutMs ?? 8_000,
    onError: onBotError,
  });

  // ---- lifecycle -----------------------------------------------------------------------

  let loop: Promise<void> = Promise.resolve();

  return {
    mode,
    ready,
    async start() {
      if (started || stopped) return;
      started = true;
      // The first try at the leader lease comes first: the leader polls, the others stand by.
      await leadership.start();
      if (mode === 'webhook') {
        loop = registerWebhook({ bot, log, token, lifetime, connect, onReady: setReady, url: `${publicUrl}${TELEGRAM_WEBHOOK_PATH}`, secret: config.webhookSecret!, signal, restartDelayMs }).catch((err: unknown) => {
          log.error({ err: describeTelegramError(err, token) }, 'telegram: bot loop crashed');
        });
      } else if (!leadership.isLeader()) {
        void standBy();
      }
      scheduler.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      abort.abort();
      const passes = scheduler.stop();
      await leadershipChange;
      await stopPolling();
      if (bot.isRunning()) {
        try {
          await bot.stop();
        } catch (err) {
          log.debug({ telegram: describeTelegramError(err, token) }, 'telegram: could not confirm the last update while stopping');
        }
      }
      await loop;
      await passes;
      // Last: another broker takes over at its next try, once this one no longer polls or posts.
      await leadership.stop();
    },
    kick,
    handleWebhook,
    status: () => ({ ...state, lastError: state.lastError ? { ...state.lastError } : null }),
  };
}
