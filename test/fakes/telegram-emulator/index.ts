/**
 * A Telegram Bot API server for tests, faithful where an approval bot can
 * tell the difference (see docs/telegram.md, "Testing"): real long polling
 * with offset/limit/timeout and 409s, webhooks with the secret-token header
 * and retries, HTML parse errors, the 4096-character and 64-byte limits,
 * "message is not modified", callback-query expiry, exact success and error
 * envelopes, and fault injection (429 retry_after, 500, dropped connection).
 *
 * grammY talks to it through `client.apiRoot: emulator.url`; tests play the
 * users through `tap`, `sendText` and read the chat back with `messages`.
 *
 * Decisions where the Bot API documentation is silent:
 * - `editMessageText` / `editMessageReplyMarkup` without `reply_markup`
 *   remove the inline keyboard (what bots observe on the real service);
 *   an empty `inline_keyboard` removes it too.
 * - Only `parse_mode: "HTML"` is implemented; Markdown gets a 400 saying so.
 * - Plain-http webhook URLs are accepted (the real service requires https on
 *   ports 443/80/88/8443) so tests can use loopback.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseTelegramHtml, type MessageEntity } from './parse-html.ts';
import type {
  CallbackAnswer,
  Fault,
  InlineKeyboardMarkup,
  RecordedCall,
  TgCallbackQuery,
  TgChat,
  TgMessage,
  TgUpdate,
  TgUser,
  WebhookInfo,
} from './types.ts';

export type * from './types.ts';
export { parseTelegramHtml } from './parse-html.ts';

export interface TelegramEmulatorOptions {
  /** The bot's token; any other token gets 401. */
  token?: string;
  bot?: Partial<Pick<TgUser, 'id' | 'first_name' | 'username'>>;
  /** Chats that exist from the start (the approval group, say). */
  chats?: TgChat[];
  /** Users that exist from the start; unknown user ids are created on first use. */
  users?: Partial<TgUser>[];
  /** How long a callback query can be answered (Telegram: a few seconds to tens of seconds). */
  callbackQueryTtlMs?: number;
  /** Delay before a failed webhook delivery is retried. */
  webhookRetryMs?: number;
  /** Upper bound of the long-poll `timeout` honoured, in seconds (Telegram: 50). */
  maxLongPollSeconds?: number;
}

type ApiResult = { status: number; body: Record<string, unknown> } | 'drop';

const ok = (result: unknown, description?: string): ApiResult => ({
  status: 200,
  body: { ok: true, result, ...(description ? { description } : {}) },
});
const fail = (code: number, description: string, parameters?: Record<string, unknown>): ApiResult => ({
  status: code,
  body: { ok: false, error_code: code, description, ...(parameters ? { parameters } : {}) },
});
const badRequest = (what: string) => fail(400, `Bad Request: ${what}`);

class ApiFailure extends Error {
  constructor(readonly result: ApiResult) {
    super('api failure');
  }
}

const NOT_MODIFIED =
  'message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message';
const QUERY_TOO_OLD = 'query is too old and response timeout expired or query ID is invalid';
const DEFAULT_ALL_EXCEPT = ['chat_member', 'message_reaction', 'message_reaction_count'];

interface StoredChat {
  chat: TgChat;
  nextMessageId: number;
  messages: Map<number, TgMessage>;
}

interface QueuedUpdate {
  update: TgUpdate;
  type: string;
  inFlight: boolean;
  retryAt: number;
}

interface Waiter {
  respond(result: ApiResult): void;
  params: { limit: number };
}

export type TelegramEmulator = Awaited<ReturnType<typeof startTelegramEmulator>>;

/** Starts the emulator on 127.0.0.1 and a free port. Close it with `close()`. */
export async function startTelegramEmulator(opts: TelegramEmulatorOptions = {}) {
  const token = opts.token ?? '7000000001:AAtest-emulator-token_0123456789abcdef';
  const botUser: TgUser = {
    id: opts.bot?.id ?? (Number(token.split(':')[0]) || 7000000001),
    is_bot: true,
    first_name: opts.bot?.first_name ?? 'JIT Broker Test Bot',
    username: opts.bot?.username ?? 'jit_test_bot',
  };
  const callbackTtlMs = opts.callbackQueryTtlMs ?? 15_000;
  const webhookRetryMs = opts.webhookRetryMs ?? 200;
  const maxLongPoll = opts.maxLongPollSeconds ?? 50;

  const events = new EventEmitter();
  events.setMaxListeners(0);
  const changed = () => events.emit('change');

  const chats = new Map<number, StoredChat>();
  const users = new Map<number, TgUser>();
  const calls: RecordedCall[] = [];
  const answers: CallbackAnswer[] = [];
  const queries = new Map<string, { query: TgCallbackQuery; createdAt: number; answered: boolean }>();
  const faults = new Map<string, Fault[]>();
  /** Calls held before they run, per method: each waits for its promise (see holdNext). */
  const holds = new Map<string, (() => Promise<void>)[]>();
  let queue: QueuedUpdate[] = [];
  let nextUpdateId = 1;
  let nextQueryId = 1;
  let allowedUpdates: string[] | undefined;
  let waiter: Waiter | undefined;
  let commands: unknown[] = [];
  let webhook: { url: string; secret?: string; maxConnections: number; allowedUpdates?: string[] } | undefined;
  let webhookError: { date: number; message: string } | undefined;
  const deliveries = new Set<AbortController>();
  let closed = false;

  const nowSec = () => Math.floor(Date.now() / 1000);

  function addChat(chat: TgChat): TgChat {
    if (!chats.has(chat.id)) chats.set(chat.id, { chat: { ...chat }, nextMessageId: 1, messages: new Map() });
    return chats.get(chat.id)!.chat;
  }
  function addUser(u: Partial<TgUser> & { id: number }): TgUser {
    const user: TgUser = { is_bot: false, first_name: u.first_name ?? `User${u.id}`, ...u } as TgUser;
    users.set(user.id, user);
    return user;
  }
  const userOf = (id: number) => users.get(id) ?? addUser({ id });
  for (const c of opts.chats ?? []) addChat(c);
  for (const u of opts.users ?? []) addUser({ id: u.id ?? 0, ...u } as TgUser);

  const clone = <T>(v: T): T => structuredClone(v);

  // ---- updates ------------------------------------------------------------

  function accepts(type: string): boolean {
    const allowed = webhook?.allowedUpdates ?? allowedUpdates;
    if (allowed === undefined || allowed.length === 0) return !DEFAULT_ALL_EXCEPT.includes(type);
    return allowed.includes(type);
  }

  function enqueue(update: Omit<TgUpdate, 'update_id'>, type: string): TgUpdate | undefined {
    if (!accepts(type)) return undefined;
    const full = { update_id: nextUpdateId++, ...update } as TgUpdate;
    queue.push({ update: full, type, inFlight: false, retryAt: 0 });
    changed();
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w.respond(ok(takeUpdates(w.params.limit)));
    }
    pumpWebhook();
    return full;
  }

  const takeUpdates = (limit: number) => queue.slice(0, limit).map((q) => clone(q.update));

  function getUpdates(p: Record<string, unknown>, res: ServerResponse): ApiResult | undefined {
    if (webhook) return fail(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
    const offset = toInt(p.offset) ?? 0;
    const limit = Math.min(100, Math.max(1, toInt(p.limit) ?? 100));
    const timeout = Math.min(maxLongPoll, Math.max(0, toInt(p.timeout) ?? 0));
    if (Array.isArray(p.allowed_updates)) allowedUpdates = p.allowed_updates as string[];
    if (offset > 0) queue = queue.filter((q) => q.update.update_id >= offset);
    else if (offset < 0) queue = queue.slice(offset);
    if (waiter) {
      const old = waiter;
      waiter = undefined;
      old.respond(fail(409, 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running'));
    }
    if (queue.length > 0 || timeout === 0) return ok(takeUpdates(limit));
    const timer = setTimeout(() => {
      if (waiter === me) {
        waiter = undefined;
        me.respond(ok([]));
      }
    }, timeout * 1000);
    const me: Waiter = {
      params: { limit },
      respond(result) {
        clearTimeout(timer);
        send(res, result);
      },
    };
    waiter = me;
    res.on('close', () => {
      clearTimeout(timer);
      if (waiter === me) waiter = undefined;
    });
    return undefined;
  }

  // ---- webhooks -----------------------------------------------------------

  function pumpWebhook(): void {
    if (!webhook || closed) return;
    const hook = webhook;
    const inFlight = queue.filter((q) => q.inFlight).length;
    const now = Date.now();
    const ready = queue.filter((q) => !q.inFlight && q.retryAt <= now).slice(0, Math.max(0, hook.maxConnections - inFlight));
    for (const q of ready) {
      q.inFlight = true;
      void deliver(hook, q);
    }
    const waiting = queue.filter((q) => !q.inFlight && q.retryAt > now);
    if (waiting.length > 0) {
      const next = Math.min(...waiting.map((q) => q.retryAt));
      setTimeout(pumpWebhook, Math.max(1, next - now)).unref();
    }
  }

  async function deliver(hook: NonNullable<typeof webhook>, q: QueuedUpdate): Promise<void> {
    const controller = new AbortController();
    deliveries.add(controller);
    const timer = setTimeout(() => controller.abort(), 10_000);
    let error: string | undefined;
    try {
      const res = await fetch(hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(hook.secret !== undefined ? { 'X-Telegram-Bot-Api-Secret-Token': hook.secret } : {}),
        },
        body: JSON.stringify(q.update),
        signal: controller.signal,
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status < 200 || res.status > 299) error = `Wrong response from the webhook: ${res.status} ${res.statusText}`;
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code;
      error = code === 'ECONNREFUSED' ? 'Connection refused' : controller.signal.aborted ? 'Read timeout expired' : 'Connection reset by peer';
    } finally {
      clearTimeout(timer);
      deliveries.delete(controller);
    }
    q.inFlight = false;
    if (error === undefined) {
      queue = queue.filter((x) => x !== q);
    } else {
      webhookError = { date: nowSec(), message: error };
      q.retryAt = Date.now() + webhookRetryMs;
    }
    changed();
    pumpWebhook();
  }

  function webhookInfo(): WebhookInfo {
    return {
      url: webhook?.url ?? '',
      has_custom_certificate: false,
      pending_update_count: queue.length,
      ...(webhook ? { max_connections: webhook.maxConnections } : {}),
      ...(webhook?.allowedUpdates ? { allowed_updates: webhook.allowedUpdates } : {}),
      ...(webhookError ? { last_error_date: webhookError.date, last_error_message: webhookError.message } : {}),
    };
  }

  // ---- validation helpers --------------------------------------------------

  function resolveChat(raw: unknown): StoredChat {
    const id = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : undefined;
    if (raw === undefined || raw === '') throw new ApiFailure(badRequest('chat_id is empty'));
    const chat = id === undefined ? undefined : chats.get(id);
    if (!chat) throw new ApiFailure(badRequest('chat not found'));
    return chat;
  }

  function formatText(p: Record<string, unknown>, editing: boolean): { text: string; entities: MessageEntity[] } {
    if (p.text === undefined || p.text === null || String(p.text) === '') throw new ApiFailure(badRequest('message text is empty'));
    const raw = String(p.text);
    const mode = typeof p.parse_mode === 'string' ? p.parse_mode : '';
    let parsed: { text: string; entities: MessageEntity[] };
    if (mode === '') {
      parsed = { text: raw.trim(), entities: Array.isArray(p.entities) ? (p.entities as MessageEntity[]) : [] };
    } else if (mode.toLowerCase() === 'html') {
      const r = parseTelegramHtml(raw);
      if (!r.ok) throw new ApiFailure(badRequest(`can't parse entities: ${r.error}`));
      parsed = r;
    } else if (/^markdown(v2)?$/i.test(mode)) {
      throw new ApiFailure(badRequest(`the emulator implements parse_mode HTML only, not ${mode}`));
    } else {
      throw new ApiFailure(badRequest(`unsupported parse_mode`));
    }
    if (parsed.text.length === 0) throw new ApiFailure(badRequest('message text is empty'));
    if (parsed.text.length > 4096) throw new ApiFailure(badRequest(editing ? 'MESSAGE_TOO_LONG' : 'message is too long'));
    return parsed;
  }

  /** The inline keyboard to store (undefined = none), after Telegram's checks. */
  function inlineMarkup(raw: unknown): InlineKeyboardMarkup | undefined {
    if (raw === undefined || raw === null) return undefined;
    let markup = raw;
    if (typeof markup === 'string') {
      try {
        markup = JSON.parse(markup);
      } catch {
        throw new ApiFailure(badRequest("can't parse reply keyboard markup JSON object"));
      }
    }
    if (typeof markup !== 'object' || markup === null) throw new ApiFailure(badRequest('object expected as reply markup'));
    const kb = (markup as { inline_keyboard?: unknown }).inline_keyboard;
    if (kb === undefined) return undefined; // reply keyboards are not attached to the message
    if (!Array.isArray(kb) || kb.some((row) => !Array.isArray(row))) throw new ApiFailure(badRequest("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays"));
    for (const row of kb as unknown[][]) {
      for (const b of row) {
        const button = b as Record<string, unknown>;
        if (typeof button?.text !== 'string' || button.text === '') throw new ApiFailure(badRequest('BUTTON_TEXT_INVALID'));
        if (button.callback_data !== undefined) {
          const bytes = typeof button.callback_data === 'string' ? Buffer.byteLength(button.callback_data, 'utf8') : 0;
          if (bytes < 1 || bytes > 64) throw new ApiFailure(badRequest('BUTTON_DATA_INVALID'));
        } else if (button.url !== undefined) {
          try {
            new URL(String(button.url));
          } catch {
            throw new ApiFailure(badRequest('BUTTON_URL_INVALID'));
          }
        } else {
          throw new ApiFailure(badRequest('text buttons are unallowed in the inline keyboard'));
        }
      }
    }
    const rows = (kb as InlineKeyboardMarkup['inline_keyboard']).filter((r) => r.length > 0);
    return rows.length > 0 ? { inline_keyboard: clone(rows) } : undefined;
  }

  function editable(p: Record<string, unknown>): { chat: StoredChat; message: TgMessage } {
    if (p.inline_message_id !== undefined) throw new ApiFailure(badRequest('MESSAGE_ID_INVALID'));
    const chat = resolveChat(p.chat_id);
    const id = toInt(p.message_id);
    if (id === undefined) throw new ApiFailure(badRequest('message identifier is not specified'));
    const message = chat.messages.get(id);
    if (!message) throw new ApiFailure(badRequest('message to edit not found'));
    if (message.from?.id !== botUser.id) throw new ApiFailure(badRequest("message can't be edited"));
    return { chat, message };
  }

  const sameJson = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

  function storeMessage(chat: StoredChat, m: Omit<TgMessage, 'message_id' | 'chat' | 'date'>): TgMessage {
    const message: TgMessage = { message_id: chat.nextMessageId++, ...m, chat: clone(chat.chat), date: nowSec() };
    chat.messages.set(message.message_id, message);
    changed();
    return message;
  }

  // ---- methods --------------------------------------------------------------

  const methods: Record<string, (p: Record<string, unknown>, res: ServerResponse) => ApiResult | undefined> = {
    getme: () => ok({ ...botUser, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false, can_connect_to_business: false, has_main_web_app: false }),
    getupdates: getUpdates,
    sendmessage(p) {
      const chat = resolveChat(p.chat_id);
      const { text, entities } = formatText(p, false);
      const markup = inlineMarkup(p.reply_markup);
      const replyTo = p.reply_parameters as { message_id?: unknown; allow_sending_without_reply?: boolean } | undefined;
      let replied: TgMessage | undefined;
      if (replyTo?.message_id !== undefined) {
        replied = chat.messages.get(toInt(replyTo.message_id) ?? -1);
        if (!replied && !replyTo.allow_sending_without_reply) return badRequest('message to be replied not found');
      }
      const message = storeMessage(chat, {
        from: clone(botUser),
        ...(replied ? { reply_to_message: (({ reply_to_message: _, ...rest }) => clone(rest))(replied) } : {}),
        text,
        ...(entities.length ? { entities } : {}),
        ...(markup ? { reply_markup: markup } : {}),
        ...(p.link_preview_options ? { link_preview_options: p.link_preview_options as Record<string, unknown> } : {}),
      });
      return ok(clone(message));
    },
    editmessagetext(p) {
      const { message } = editable(p);
      const { text, entities } = formatText(p, true);
      const markup = inlineMarkup(p.reply_markup);
      if (message.text === text && sameJson(message.entities ?? [], entities) && sameJson(message.reply_markup, markup)) {
        return badRequest(NOT_MODIFIED);
      }
      message.text = text;
      if (entities.length) message.entities = entities;
      else delete message.entities;
      if (markup) message.reply_markup = markup;
      else delete message.reply_markup;
      message.edit_date = nowSec();
      changed();
      return ok(clone(message));
    },
    editmessagereplymarkup(p) {
      const { message } = editable(p);
      const markup = inlineMarkup(p.reply_markup);
      if (sameJson(message.reply_markup, markup)) return badRequest(NOT_MODIFIED);
      if (markup) message.reply_markup = markup;
      else delete message.reply_markup;
      message.edit_date = nowSec();
      changed();
      return ok(clone(message));
    },
    deletemessage(p) {
      const chat = resolveChat(p.chat_id);
      const id = toInt(p.message_id);
      if (id === undefined || !chat.messages.delete(id)) return badRequest('message to delete not found');
      changed();
      return ok(true);
    },
    answercallbackquery(p) {
      const id = typeof p.callback_query_id === 'string' ? p.callback_query_id : String(p.callback_query_id ?? '');
      const q = queries.get(id);
      if (!q || q.answered || Date.now() - q.createdAt > callbackTtlMs) return badRequest(QUERY_TOO_OLD);
      const text = p.text === undefined ? undefined : String(p.text);
      if (text !== undefined && text.length > 200) return badRequest('MESSAGE_TOO_LONG');
      q.answered = true;
      answers.push({
        callback_query_id: id,
        from: q.query.from.id,
        data: q.query.data,
        ...(text !== undefined ? { text } : {}),
        ...(p.show_alert !== undefined ? { show_alert: Boolean(p.show_alert) } : {}),
        at: Date.now(),
      });
      changed();
      return ok(true);
    },
    setwebhook(p) {
      const url = typeof p.url === 'string' ? p.url : '';
      if (url === '') {
        const had = webhook !== undefined;
        webhook = undefined;
        return ok(true, had ? 'Webhook was deleted' : 'Webhook is already deleted');
      }
      try {
        const u = new URL(url);
        if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error();
      } catch {
        return badRequest('bad webhook: Failed to resolve host: Name or service not known');
      }
      const secret = p.secret_token === undefined ? undefined : String(p.secret_token);
      if (secret !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(secret)) return badRequest('secret token contains unallowed characters');
      if (p.drop_pending_updates === true) queue = queue.filter((q) => q.inFlight);
      const maxConnections = Math.min(100, Math.max(1, toInt(p.max_connections) ?? 40));
      const allowed = Array.isArray(p.allowed_updates) ? (p.allowed_updates as string[]) : webhook?.allowedUpdates;
      const same = webhook?.url === url && webhook.secret === secret;
      webhook = { url, ...(secret !== undefined ? { secret } : {}), maxConnections, ...(allowed ? { allowedUpdates: allowed } : {}) };
      webhookError = undefined;
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w.respond(fail(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"));
      }
      changed();
      queueMicrotask(pumpWebhook);
      return ok(true, same ? 'Webhook is already set' : 'Webhook was set');
    },
    deletewebhook(p) {
      const had = webhook !== undefined;
      webhook = undefined;
      if (p.drop_pending_updates === true) queue = queue.filter((q) => q.inFlight);
      changed();
      return ok(true, had ? 'Webhook was deleted' : 'Webhook is already deleted');
    },
    getwebhookinfo: () => ok(webhookInfo()),
    setmycommands(p) {
      const list = Array.isArray(p.commands) ? p.commands : undefined;
      if (!list) return badRequest('commands must be an array');
      for (const c of list as { command?: unknown; description?: unknown }[]) {
        if (typeof c.command !== 'string' || !/^[a-z0-9_]{1,32}$/.test(c.command)) return badRequest('BOT_COMMAND_INVALID');
        if (typeof c.description !== 'string' || c.description.length < 1 || c.description.length > 256) return badRequest('BOT_COMMAND_DESCRIPTION_INVALID');
      }
      commands = clone(list);
      return ok(true);
    },
    getmycommands: () => ok(clone(commands)),
  };

  // ---- HTTP -------------------------------------------------------------------

  function send(res: ServerResponse, result: ApiResult): void {
    if (res.writableEnded || res.destroyed) return;
    if (result === 'drop') {
      res.socket?.destroy();
      return;
    }
    const body = JSON.stringify(result.body);
    res.writeHead(result.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  async function readParams(req: IncomingMessage, url: URL): Promise<{ params: Record<string, unknown> } | { error: ApiResult }> {
    const params: Record<string, unknown> = Object.fromEntries(url.searchParams);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    if (raw.length === 0) return { params };
    if (type.startsWith('application/json')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        return { error: badRequest("can't parse JSON encoded request") };
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { error: badRequest('JSON object expected') };
      return { params: { ...params, ...(parsed as Record<string, unknown>) } };
    }
    if (type.startsWith('application/x-www-form-urlencoded')) {
      for (const [k, v] of new URLSearchParams(raw)) {
        try {
          params[k] = /^[[{]/.test(v) ? JSON.parse(v) : v;
        } catch {
          params[k] = v;
        }
      }
      return { params };
    }
    return { error: badRequest('the emulator accepts JSON or form-urlencoded bodies only') };
  }

  function takeFault(method: string): ApiResult | undefined {
    const list = faults.get(method);
    const f = list?.shift();
    if (!f) return undefined;
    if (list!.length === 0) faults.delete(method);
    switch (f.kind) {
      case 'retry_after':
        return fail(429, `Too Many Requests: retry after ${f.seconds}`, { retry_after: f.seconds });
      case 'server_error':
        return fail(500, 'Internal Server Error');
      case 'drop':
        return 'drop';
      case 'error':
        return fail(f.code, f.description, f.parameters);
    }
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://emulator');
      const m = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(url.pathname);
      if (!m) return send(res, fail(404, 'Not Found'));
      const [, givenToken, methodName] = m as unknown as [string, string, string];
      const read = await readParams(req, url);
      const params = 'params' in read ? read.params : {};
      const method = methodName.toLowerCase();
      const record = (status: number, description?: string) => {
        calls.push({ method: methodName, params, status, ...(description ? { description } : {}), at: Date.now() });
        changed();
      };
      if (decodeURIComponent(givenToken) !== token) {
        record(401, 'Unauthorized');
        return send(res, fail(401, 'Unauthorized'));
      }
      const handler = methods[method];
      if (!handler) {
        record(404, 'Not Found');
        return send(res, fail(404, 'Not Found'));
      }
      if ('error' in read) {
        record(read.error === 'drop' ? 0 : read.error.status);
        return send(res, read.error);
      }
      const hold = holds.get(methodName)?.shift() ?? holds.get(method)?.shift();
      if (hold) await hold();
      const fault = takeFault(methodName) ?? takeFault(method);
      if (fault) {
        record(fault === 'drop' ? 0 : fault.status, fault === 'drop' ? 'dropped' : String(fault.body.description));
        changed();
        return send(res, fault);
      }
      let result: ApiResult | undefined;
      try {
        result = handler(params, res);
      } catch (err) {
        if (!(err instanceof ApiFailure)) throw err;
        result = err.result;
      }
      if (result === undefined) {
        record(200); // long poll parked; answered later
        return;
      }
      record(result === 'drop' ? 0 : result.status, result === 'drop' ? 'dropped' : (result.body.description as string | undefined));
      changed();
      send(res, result);
    })().catch((err: unknown) => {
      send(res, fail(500, `Internal Server Error: emulator bug: ${(err as Error).message}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  // ---- test controls ----------------------------------------------------------

  const emulator = {
    /** The `apiRoot` to give grammY (no trailing slash). */
    url,
    token,
    botUser: clone(botUser),
    addChat,
    addUser,

    /**
     * A user taps an inline button: enqueues a `callback_query` update for
     * the message as it is now. Throws when the message has no button with
     * that data (a user cannot tap a button that is not there) unless
     * `force` is set, which plays a client still showing an older keyboard.
     */
    tap(userId: number, messageId: number, data: string, o: { chatId?: number; force?: boolean } = {}): TgUpdate | undefined {
      const chat = o.chatId !== undefined ? chats.get(o.chatId) : [...chats.values()].find((c) => c.messages.has(messageId));
      const message = chat?.messages.get(messageId);
      if (!chat || !message) throw new Error(`emulator: no message ${messageId}${o.chatId !== undefined ? ` in chat ${o.chatId}` : ''}`);
      const buttons = message.reply_markup?.inline_keyboard.flat() ?? [];
      if (!o.force && !buttons.some((b) => b.callback_data === data)) {
        throw new Error(`emulator: message ${messageId} has no button with callback_data "${data}" (buttons: ${JSON.stringify(buttons.map((b) => b.callback_data))})`);
      }
      const query: TgCallbackQuery = {
        id: `${botUser.id}${String(nextQueryId++).padStart(9, '0')}`,
        from: clone(userOf(userId)),
        message: clone(message),
        chat_instance: String(-BigInt(chat.chat.id) * 7919n),
        data,
      };
      queries.set(query.id, { query, createdAt: Date.now(), answered: false });
      return enqueue({ callback_query: query }, 'callback_query');
    },

    /**
     * A user sends a text message (e.g. a command); commands get
     * `bot_command` entities. Default chat: the first group, else the
     * user's private chat with the bot.
     */
    sendText(userId: number, text: string, o: { chatId?: number } = {}): TgMessage {
      const user = userOf(userId);
      const chat = o.chatId !== undefined ? chats.get(o.chatId) : [...chats.values()].find((c) => c.chat.type !== 'private') ?? chats.get(userId);
      const target = chat ?? chats.get(addChat({ id: user.id, type: 'private', first_name: user.first_name })!.id)!;
      const entities: MessageEntity[] = [];
      for (const m of text.matchAll(/(?<=^|\s)\/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?/g)) {
        entities.push({ type: 'bot_command', offset: m.index!, length: m[0].length });
      }
      const message = storeMessage(target, { from: clone(user), text, ...(entities.length ? { entities } : {}) });
      enqueue({ message: clone(message) }, 'message');
      return clone(message);
    },

    /** The current state of a chat: every message, oldest first, as Telegram holds it now. */
    messages(chatId: number): TgMessage[] {
      return [...(chats.get(chatId)?.messages.values() ?? [])].map(clone);
    },
    /** Only the bot's messages in a chat. */
    botMessages(chatId: number): TgMessage[] {
      return emulator.messages(chatId).filter((m) => m.from?.id === botUser.id);
    },
    /** `callback_data` of every inline button of a message. */
    buttons(message: TgMessage): string[] {
      return (message.reply_markup?.inline_keyboard.flat() ?? []).map((b) => b.callback_data ?? b.url ?? '');
    },
    callbackAnswers(): CallbackAnswer[] {
      return clone(answers);
    },
    calls(method?: string): RecordedCall[] {
      return calls.filter((c) => method === undefined || c.method.toLowerCase() === method.toLowerCase()).map(clone);
    },
    /** Updates not yet confirmed (getUpdates) or delivered (webhook). */
    pendingUpdates(): TgUpdate[] {
      return queue.map((q) => clone(q.update));
    },
    webhookInfo,
    commands: () => clone(commands),

    /** The next `times` calls of `method` fail with `fault` instead of running. */
    failNext(method: string, fault: Fault, times = 1): void {
      const list = faults.get(method) ?? [];
      for (let i = 0; i < times; i++) list.push(fault);
      faults.set(method, list);
    },
    clearFaults(): void {
      faults.clear();
    },
    /**
     * Holds the next call of `method` (unanswered, the connection open) until
     * the returned function is called; it then runs as usual. `held()`
     * resolves once that call has arrived.
     */
    holdNext(method: string): { release: () => void; held: Promise<void> } {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let arrived!: () => void;
      const held = new Promise<void>((r) => (arrived = r));
      const list = holds.get(method) ?? [];
      list.push(() => {
        arrived();
        return gate;
      });
      holds.set(method, list);
      return { release, held };
    },

    /** Resolves once `predicate` holds (checked on every state change); rejects after `timeoutMs`. */
    waitFor<T>(predicate: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5_000, what = 'condition'): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const settle = (v: T | undefined | false) => {
          if (v !== undefined && v !== false) {
            cleanup();
            resolve(v);
          }
        };
        const fail = (err: unknown) => {
          cleanup();
          reject(err as Error);
        };
        const check = () => {
          let v: T | undefined | false | Promise<T | undefined | false>;
          try {
            v = predicate();
          } catch (err) {
            fail(err);
            return;
          }
          // A predicate may read the database (the storage interface is asynchronous).
          if (v instanceof Promise) v.then(settle, fail);
          else settle(v);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`emulator: timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          events.off('change', check);
        };
        events.on('change', check);
        check();
      });
    },

    async close(): Promise<void> {
      closed = true;
      for (const d of deliveries) d.abort();
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w.respond(ok([]));
      }
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return emulator;
}

function toInt(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return undefined;
}
