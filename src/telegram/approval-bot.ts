import { Api, Bot, BotError } from 'grammy';
import type { ApiClientOptions } from 'grammy';
import type { Update } from 'grammy/types';
import type { BrokerDeps } from '../broker/deps.ts';
import type { ErrorCode } from '../broker/errors.ts';
import { ConfigError } from '../config/config.ts';
import { problemBody } from '../http/problem.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { safeEqual } from '../lib/secrets.ts';
import { boundedRetry, callTimeout, classifyTelegramError, describeTelegramError, type RetryOptions } from './errors.ts';
import { registerHandlers, type TelegramConfig } from './handlers.ts';
import { createTelegramStore } from './store.ts';
import { createSync, type PassResult } from './sync.ts';

export type { TelegramConfig };

/** The path the broker serves Telegram webhook updates on (SPEC §6). */
export const TELEGRAM_WEBHOOK_PATH = '/telegram/webhook';

/** Update kinds the bot handles; Telegram drops the rest before sending them. */
const ALLOWED_UPDATES = ['message', 'callback_query'] as const;

/** Telegram's rule for `secret_token` (setWebhook). */
const SECRET_SHAPE = /^[A-Za-z0-9_-]{1,256}$/;

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
}

export interface ApprovalBotStatus {
  mode: 'polling' | 'webhook';
  /** getMe succeeded and polling runs / the webhook is registered. */
  ready: boolean;
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
  /** `POST /telegram/webhook`: checks the secret header (401), then hands the update to the bot. */
  handleWebhook(request: Request): Promise<Response>;
  status(): ApprovalBotStatus;
}

/**
 * Checks the Telegram settings the config schema cannot: the webhook secret
 * must be something Telegram accepts, or setWebhook would fail forever.
 */
export function validateTelegramConfig(config: TelegramConfig): void {
  if (config.webhookSecret !== undefined && !SECRET_SHAPE.test(config.webhookSecret)) {
    throw new ConfigError('TELEGRAM_WEBHOOK_SECRET', 'Telegram accepts 1-256 characters of A-Z, a-z, 0-9, "_" and "-"');
  }
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
  const syncIntervalMs = options.syncIntervalMs ?? 3_000;
  const pollTimeoutSeconds = options.pollTimeoutSeconds ?? 30;
  const callTimeoutSeconds = options.callTimeoutSeconds ?? 15;
  const restartDelayMs = options.restartDelayMs ?? 5_000;
  const webhookReplyTimeoutMs = options.webhookReplyTimeoutMs ?? 8_000;

  const client: ApiClientOptions = {
    apiRoot: config.apiRoot.replace(/\/+$/, ''),
    // getUpdates holds the connection for the poll timeout; other calls get callTimeout().
    timeoutSeconds: pollTimeoutSeconds + callTimeoutSeconds,
  };
  const bot = new Bot(token, { client });
  bot.api.config.use(callTimeout(callTimeoutSeconds), boundedRetry(options.retry));
  const syncApi = new Api(token, client);
  syncApi.config.use(callTimeout(callTimeoutSeconds));

  const store = createTelegramStore(deps.db);
  const state: ApprovalBotStatus = { mode, ready: false, lastSyncOkAt: null, lastError: null };
  let stopped = false;
  let started = false;
  const lifetime = new AbortController();
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const setReady = () => {
    if (!state.ready) log.info({ mode, bot: bot.botInfo.username }, mode === 'polling' ? 'telegram: long polling started' : 'telegram: webhook registered');
    state.ready = true;
    markReady();
  };

  // ---- sync loop ---------------------------------------------------------------

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
  let pauseUntil = 0;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;
  let queued: Promise<void> | undefined;

  const schedule = () => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    const now = Date.now();
    const wait = pauseUntil > now ? pauseUntil - now + 5 : syncIntervalMs;
    timer = setTimeout(() => void kick(), wait);
    timer.unref();
  };

  async function runPass(): Promise<void> {
    try {
      if (stopped || Date.now() < pauseUntil) return;
      let result: PassResult;
      try {
        result = await sync.pass();
      } catch (err) {
        // A database error, most likely; the next pass tries again.
        log.error({ err: describeTelegramError(err, token) }, 'telegram: sync pass failed');
        return;
      }
      if (result.pauseUntil !== undefined) {
        pauseUntil = result.pauseUntil;
        if (!state.lastError) log.warn({ telegram: result.error, retry_in_ms: result.pauseUntil - Date.now() }, 'telegram: Bot API unavailable; approval messages are deferred (requests stay pending)');
        state.lastError = result.error ?? {};
      } else {
        if (state.lastError) log.info('telegram: Bot API reachable again');
        state.lastError = null;
        state.lastSyncOkAt = Date.now();
      }
    } finally {
      schedule();
    }
  }

  function kick(): Promise<void> {
    if (stopped || !started) return Promise.resolve();
    if (!current) {
      current = runPass().finally(() => (current = undefined));
      return current;
    }
    queued ??= current.then(() => {
      queued = undefined;
      return kick();
    });
    return queued;
  }

  // ---- handlers -------------------------------------------------------------------

  registerHandlers(bot, { deps, config, store, log, clock, token, kick: () => void kick() });
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
  bot.catch(onBotError);

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (lifetime.signal.aborted) return resolve();
      const done = () => {
        clearTimeout(t);
        lifetime.signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      lifetime.signal.addEventListener('abort', done, { once: true });
    });
  const signal = () => lifetime.signal as unknown as Parameters<typeof bot.api.getMe>[0];

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

  // ---- long polling ----------------------------------------------------------------

  async function pollForever(): Promise<void> {
    let lastFailure: string | undefined;
    while (!stopped) {
      let delay = restartDelayMs;
      try {
        await init();
        await registerCommandMenu();
        if (stopped) break;
        await bot.start({
          timeout: pollTimeoutSeconds,
          allowed_updates: [...ALLOWED_UPDATES],
          drop_pending_updates: false,
          onStart: setReady,
        });
        if (stopped) break;
        log.warn('telegram: long polling ended unexpectedly; restarting');
      } catch (err) {
        if (stopped) break;
        const f = classifyTelegramError(err);
        // A rejected token will not fix itself soon: retry slowly.
        if (f.kind === 'unauthorized') delay = restartDelayMs * 12;
        const detail = { telegram: describeTelegramError(err, token), retry_in_ms: delay };
        // Log each kind of failure once at its level, then quietly until it changes.
        const level = lastFailure === f.kind ? 'debug' : f.kind === 'unauthorized' || f.kind === 'conflict' ? 'error' : 'warn';
        lastFailure = f.kind;
        if (f.kind === 'unauthorized') log[level](detail, 'telegram: the Bot API rejected TELEGRAM_BOT_TOKEN; approvals via Telegram are unavailable');
        else if (f.kind === 'conflict') log[level](detail, 'telegram: another process is polling with this bot token (or set a webhook); only one may');
        else log[level](detail, 'telegram: long polling failed; restarting');
        await sleep(delay);
        continue;
      }
      lastFailure = undefined;
      await sleep(delay);
    }
  }

  // ---- webhook -------------------------------------------------------------------------

  const webhookUrl = `${publicUrl}${TELEGRAM_WEBHOOK_PATH}`;

  async function registerWebhook(): Promise<void> {
    if (!webhookUrl.startsWith('https://')) {
      log.warn({ url: webhookUrl }, 'telegram: Telegram only delivers webhooks to https URLs; set JIT_PUBLIC_URL to the public https address');
    }
    let delay = restartDelayMs;
    while (!stopped) {
      try {
        await init();
        await registerCommandMenu();
        await bot.api.setWebhook(
          webhookUrl,
          { secret_token: config!.webhookSecret, allowed_updates: [...ALLOWED_UPDATES], drop_pending_updates: false },
          signal(),
        );
        setReady();
        return;
      } catch (err) {
        if (stopped) return;
        log.error({ telegram: describeTelegramError(err, token), url: webhookUrl, retry_in_ms: delay }, 'telegram: could not register the webhook; will retry');
      }
      await sleep(delay);
      delay = Math.min(delay * 2, Math.max(restartDelayMs, 60_000));
    }
  }

  const recentUpdates = new Set<number>();
  const problem = (code: ErrorCode, detail: string, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(problemBody(code, detail)), {
      status: problemBody(code, detail).status,
      headers: { 'content-type': 'application/problem+json', ...headers },
    });

  async function handleWebhook(request: Request): Promise<Response> {
    const secret = config!.webhookSecret;
    if (!secret) return problem('NOT_FOUND', 'Telegram webhook mode is not enabled (TELEGRAM_WEBHOOK_SECRET is unset)');
    // Only Telegram knows the secret (sent with setWebhook); without this check
    // anyone could post forged updates, e.g. a callback query from an approver's id.
    const given = request.headers.get('x-telegram-bot-api-secret-token');
    if (given === null || !safeEqual(given, secret)) {
      log.warn({ header: given === null ? 'missing' : 'wrong' }, 'telegram: webhook call with a missing or wrong secret token refused');
      return problem('UNAUTHORIZED', 'missing or wrong X-Telegram-Bot-Api-Secret-Token');
    }
    let update: unknown;
    try {
      update = await request.json();
    } catch {
      return problem('BAD_REQUEST', 'the body is not JSON');
    }
    if (typeof update !== 'object' || update === null || !Number.isSafeInteger((update as { update_id?: unknown }).update_id)) {
      return problem('BAD_REQUEST', 'the body is not a Telegram update');
    }
    if (stopped || !bot.isInited()) return problem('UNAVAILABLE', 'the Telegram bot is not running yet', { 'retry-after': '5' });
    const id = (update as Update).update_id;
    // Telegram redelivers an update it thinks failed (a slow answer, say); handle each once.
    if (recentUpdates.has(id)) return new Response(null, { status: 200 });
    recentUpdates.add(id);
    if (recentUpdates.size > 2048) recentUpdates.delete(recentUpdates.values().next().value!);
    const handling = bot.handleUpdate(update as Update).catch(onBotError);
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([handling, new Promise<void>((r) => (timeout = setTimeout(r, webhookReplyTimeoutMs)))]);
    clearTimeout(timeout);
    return new Response(null, { status: 200 });
  }

  // ---- lifecycle -----------------------------------------------------------------------

  let loop: Promise<void> = Promise.resolve();

  return {
    mode,
    ready,
    async start() {
      if (started || stopped) return;
      started = true;
      loop = (mode === 'polling' ? pollForever() : registerWebhook()).catch((err: unknown) => {
        log.error({ err: describeTelegramError(err, token) }, 'telegram: bot loop crashed');
      });
      void kick();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      lifetime.abort();
      if (bot.isRunning()) {
        try {
          await bot.stop();
        } catch (err) {
          log.debug({ telegram: describeTelegramError(err, token) }, 'telegram: could not confirm the last update while stopping');
        }
      }
      await loop;
      await current;
      await queued;
    },
    kick,
    handleWebhook,
    status: () => ({ ...state, lastError: state.lastError ? { ...state.lastError } : null }),
  };
}
