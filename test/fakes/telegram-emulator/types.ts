import type { MessageEntity } from './parse-html.ts';

export type { MessageEntity };

/** Bot API `User`. */
export interface TgUser {
  id: number;
  is_bot: boolean;
  first_name: string;
  last_name?: string;
  username?: string;
  language_code?: string;
}

/** Bot API `Chat`. */
export interface TgChat {
  id: number;
  type: 'private' | 'group' | 'supergroup' | 'channel';
  title?: string;
  username?: string;
  first_name?: string;
}

export interface InlineButton {
  text: string;
  callback_data?: string;
  url?: string;
  [key: string]: unknown;
}

export interface InlineKeyboardMarkup {
  inline_keyboard: InlineButton[][];
}

/** Bot API `Message` (the fields this emulator produces). */
export interface TgMessage {
  message_id: number;
  from?: TgUser;
  chat: TgChat;
  date: number;
  edit_date?: number;
  text?: string;
  entities?: MessageEntity[];
  reply_markup?: InlineKeyboardMarkup;
  link_preview_options?: Record<string, unknown>;
  reply_to_message?: TgMessage;
}

/** Bot API `CallbackQuery`. */
export interface TgCallbackQuery {
  id: string;
  from: TgUser;
  message?: TgMessage;
  chat_instance: string;
  data?: string;
}

/** Bot API `Update` (the kinds this emulator produces). */
export interface TgUpdate {
  update_id: number;
  message?: TgMessage;
  callback_query?: TgCallbackQuery;
}

/** One Bot API call as the emulator saw it. */
export interface RecordedCall {
  method: string;
  params: Record<string, unknown>;
  /** HTTP status answered, or 0 when the connection was dropped. */
  status: number;
  description?: string;
  at: number;
}

export interface CallbackAnswer {
  callback_query_id: string;
  from: number;
  data: string | undefined;
  text?: string;
  show_alert?: boolean;
  at: number;
}

/** A failure injected into the next call(s) of a method. */
export type Fault =
  /** 429 with `parameters.retry_after`. */
  | { kind: 'retry_after'; seconds: number }
  /** 500 Internal Server Error in the Bot API envelope. */
  | { kind: 'server_error' }
  /** The TCP connection is destroyed without an answer. */
  | { kind: 'drop' }
  /** Any other Bot API error. */
  | { kind: 'error'; code: number; description: string; parameters?: Record<string, unknown> };

export interface WebhookInfo {
  url: string;
  has_custom_certificate: boolean;
  pending_update_count: number;
  max_connections?: number;
  allowed_updates?: string[];
  last_error_date?: number;
  last_error_message?: string;
}
