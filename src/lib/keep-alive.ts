import http from 'node:http';
import https from 'node:https';

/**
 * How long an idle pooled socket is kept: below the 5 s keep-alive timeout
 * of a Node server, so a request seldom races the server closing it (a
 * shorter `Keep-Alive: timeout=` from the server is honoured by the agent).
 * The Vault transport's undici Agent keeps its connections as long.
 */
export const IDLE_SOCKET_MS = 4_000;

export interface KeepAliveAgents {
  /** The agent for `url`: one for http:, one per certificate-check setting for https: (made on first use). */
  agentFor(url: URL, rejectUnauthorized?: boolean): http.Agent;
  /** Destroys every pooled socket; the agents stay usable. */
  destroy(): void;
}

/** Keep-alive node:http agents of one HTTP client (the webhook dispatcher; the Vault transport is on undici). */
export function keepAliveAgents(o: { maxSockets?: number } = {}): KeepAliveAgents {
  const options = { keepAlive: true, timeout: IDLE_SOCKET_MS, ...(o.maxSockets !== undefined ? { maxSockets: o.maxSockets } : {}) };
  const plain = new http.Agent(options);
  const secure = new Map<boolean, https.Agent>();
  return {
    agentFor(url, rejectUnauthorized = true) {
      if (url.protocol !== 'https:') return plain;
      let agent = secure.get(rejectUnauthorized);
      if (!agent) {
        agent = new https.Agent({ ...options, rejectUnauthorized });
        secure.set(rejectUnauthorized, agent);
      }
      return agent;
    },
    destroy() {
      plain.destroy();
      for (const agent of secure.values()) agent.destroy();
    },
  };
}
