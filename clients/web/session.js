// Where a page's token comes from, and where it is kept (only where it is needed).
//
// 1. The operator's token endpoint (config.json's `token_url`, set on the hub with
//    ROOMLOG_WEB_TOKEN_URL): the page asks it for a token at the start and again
//    before each one expires (the client's getToken). Nothing is stored: a reload asks
//    again. The contract (request, answer, errors) is in clients/README.md.
// 2. A token in the link (`#token=...`, or `?token=...`, which also reaches the
//    server's access log): taken out of the address bar at once (history.replaceState)
//    and kept in this tab's sessionStorage for reloads, under the page's own key; dropped
//    when the hub refuses it.
// 3. Neither: a form asks for one (and keeps it the same way).

import { tokenClaims } from "/client/roomlog.js";

const TOKEN_KEY = "roomlog.token:";
const LAST_KEY = "roomlog.last:";

function session() {
  try {
    return globalThis.sessionStorage;
  } catch {
    return null;
  }
}

function local() {
  try {
    return globalThis.localStorage;
  } catch {
    return null;
  }
}

/** The hub's settings for its pages (config.json); {} when it cannot be read (offline). */
export async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    return response.ok ? await response.json() : {};
  } catch {
    return {};
  }
}

/**
 * The token of the link, if any: out of the address bar at once, into this tab's
 * sessionStorage (for reloads) under the page's key. The other parameters stay.
 */
export function takeLinkToken(page) {
  const url = new URL(location.href);
  const hash = new URLSearchParams(url.hash.slice(1));
  const token = hash.get("token") || url.searchParams.get("token");
  if (!token) return null;
  url.searchParams.delete("token");
  hash.delete("token");
  url.hash = hash.toString();
  history.replaceState(history.state, "", url.href);
  keepToken(page, token);
  return token;
}

export function keepToken(page, token) {
  session()?.setItem(TOKEN_KEY + page, token);
}

export function keptToken(page) {
  return session()?.getItem(TOKEN_KEY + page) || null;
}

export function dropToken(page) {
  session()?.removeItem(TOKEN_KEY + page);
}

/** What the page was opened with last (room, ticket: not secret), for the installed app. */
export function remember(page, values) {
  local()?.setItem(LAST_KEY + page, JSON.stringify(values));
}

export function remembered(page) {
  try {
    return JSON.parse(local()?.getItem(LAST_KEY + page) || "{}") || {};
  } catch {
    return {};
  }
}

/** An error of the token endpoint, as the client's getToken contract wants it. */
export class TokenEndpointError extends Error {
  constructor(message, { status = null, loginUrl = null } = {}) {
    super(message);
    this.name = "TokenEndpointError";
    this.status = status;
    this.loginUrl = loginUrl;
  }
}

/**
 * `getToken` for the client: POST {page, room, user} to the operator's endpoint (with
 * its cookies), `{token}` back. 401 / 403 mean "sign in again" (final: the body may
 * name a `login_url`); anything else is passing and retried by the client.
 */
export function tokenEndpoint(url, request) {
  const target = new URL(url, location.href).href;
  let user = null;
  return async () => {
    const body = { ...request, user };
    let response;
    try {
      response = await fetch(target, { method: "POST", credentials: "include",
        cache: "no-store", headers: { "content-type": "application/json" },
        body: JSON.stringify(body) });
    } catch (err) {
      throw new TokenEndpointError(`token endpoint unreachable: ${err.message}`);
    }
    const json = await response.json().catch(() => null);
    if (response.status === 401 || response.status === 403) {
      throw new TokenEndpointError("signed out", { status: response.status,
        loginUrl: json && typeof json.login_url === "string" ? json.login_url : null });
    }
    if (!response.ok || !json || typeof json.token !== "string" || !json.token) {
      throw new TokenEndpointError(`token endpoint answered ${response.status}`,
        { status: response.status });
    }
    user = (tokenClaims(json.token) || {}).sub ?? user;
    return json.token;
  };
}

export function forget(page) {
  local()?.removeItem(LAST_KEY + page);
}
