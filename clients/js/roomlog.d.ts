// Types of roomlog.js, the browser client of the roomlog hub (protocol v1:
// docs/protocol.md). Hand-written; the module itself is plain JavaScript.

/** The connection as a page shows it. */
export type ConnectionState =
  | "connecting"    // first attempt(s), nothing worked yet
  | "connected"     // a WebSocket is open and authenticated
  | "reconnecting"  // the link was lost: backoff, then another attempt
  | "polling"       // WebSockets failed 5 times: HTTP long-polling, the WebSocket probed
  | "offline"       // the browser says the network is down
  | "closed";       // not trying: close(), or a close code that means stop

export type Transport = "websocket" | "polling";

export declare const STATES: readonly ConnectionState[];
export declare const STOP_CODES: readonly number[];
export declare const RETRY_CODES: readonly number[];

/** A room's position: the last message (or skip, or reset) taken. */
export interface Position {
  epoch: string;
  seq: number;
}

/** Error codes of the protocol (docs/protocol.md, "Error codes"), and the client's own. */
export type ErrorCode =
  | "BAD_FRAME" | "INVALID_ROOM" | "UNAUTHORIZED" | "FORBIDDEN" | "NOT_FOUND" | "CONFLICT"
  | "PAYLOAD_TOO_LARGE" | "RATE_LIMITED" | "LIMIT_EXCEEDED" | "INTERNAL" | "UNAVAILABLE"
  | "INVALID_ARGS" | "UNKNOWN_COMMAND" | "INVALID_TRANSITION" | "DUPLICATE_REQUEST"
  | "CAPACITY_EXCEEDED" | "TOO_MANY_ACTIVE" | "QUEUE_CLOSED" | "DENIED"
  | "PAYMENT_REQUIRED" | "PAYMENT_DECLINED" | "PAYMENT_ALREADY_USED"
  /** the client stopped (close(), or a stop close code) before the write was answered */
  | "CLOSED"
  /** a write restored from the store was older than `outboxTtl`: dropped unsent */
  | "EXPIRED"
  | (string & {});

/** What a rejected write (or a refused subscription, or an HTTP call) rejects with. */
export declare class RoomlogError extends Error {
  constructor(code: ErrorCode, message?: string,
    options?: { details?: unknown; retryAfter?: number | null; status?: number | null });
  name: "RoomlogError";
  /** switch on this: the server's error code */
  readonly code: ErrorCode;
  /** for humans (logs); do not parse */
  message: string;
  /** structured facts, e.g. `{request_id, status}` for DUPLICATE_REQUEST */
  readonly details: any;
  /** seconds, when trying later can succeed */
  readonly retryAfter: number | null;
  /** the HTTP status, when the error came over HTTP */
  readonly status: number | null;
}

// -- server frames ------------------------------------------------------------------

export interface MessageFrame<D = any> {
  type: "message";
  room: string;
  seq: number;
  epoch: string;
  /** server time of its transaction, ms since the Unix epoch */
  ts: number;
  /** the publisher's user id */
  by: string;
  data: D;
}

export interface SkipFrame {
  type: "skip";
  room: string;
  seq: number;
  epoch: string;
}

export interface ResetFrame<S = any> {
  type: "reset";
  room: string;
  reason: "epoch" | "trimmed";
  epoch: string;
  seq: number;
  trimmed: number;
  /** domain rooms (queue, repair): the state at `seq`, as this reader may see it */
  state?: S;
}

export interface SubscribedFrame<S = any> {
  type: "subscribed";
  room: string;
  epoch: string;
  head: number;
  replayed?: number;
  seq?: number;
  state?: S;
  id?: string;
}

export interface PresenceFrame {
  type: "presence" | "presence_diff";
  room: string;
  [key: string]: unknown;
}

export interface Ack<R = any> {
  type: "ack";
  id: string;
  room: string;
  epoch: string;
  /** the last seq the write caused (null: a command that changed nothing) */
  seq: number | null;
  /** commands: every seq the command caused */
  seqs?: number[];
  /** commands: the domain's answer, e.g. `{request_id}` */
  result?: R;
  /** the id had been written before: nothing new was stored */
  duplicate: boolean;
}

// -- subscriptions --------------------------------------------------------------------

export interface StateInfo {
  epoch: string;
  seq: number;
  /** "subscribed": the first state; "reset": the position was void, this replaces it */
  reason: "subscribed" | "reset";
  via?: Transport;
}

export interface SubscribeOptions<D = any, S = any> {
  /** resume from a known position (instead of the room's head) */
  since?: Position;
  /** read the room's whole retained log first (e.g. a staff feed) */
  fromStart?: boolean;
  /** also get the room's member list and its joins and leaves */
  presence?: boolean;
  /** a reset of a room without state also delivers the messages still kept (default true) */
  backfill?: boolean;
  /**
   * keep this room's position in the client's `store`; the next client (a reloaded page)
   * resumes from it and gets what it missed, once each, instead of starting at the head
   */
  persist?: boolean;
  /** every message, exactly once, in seq order, whatever the transport */
  onMessage?(frame: MessageFrame<D>): void;
  /** domain rooms: the initial state, and the state of every reset; replace yours */
  onState?(state: S, info: StateInfo): void;
  /** the position was void (room reset, trimmed): the new position is the reset's */
  onReset?(frame: ResetFrame<S>): void;
  /** a message this reader may not see (it only moves the position) */
  onSkip?(frame: SkipFrame): void;
  onSubscribed?(frame: SubscribedFrame<S>): void;
  onPresence?(frame: PresenceFrame): void;
  /** the subscription is over (FORBIDDEN, INVALID_ROOM, LIMIT_EXCEEDED...) */
  onError?(error: RoomlogError): void;
}

export declare class Subscription<D = any, S = any> {
  readonly client: RoomlogClient;
  readonly room: string;
  readonly handlers: SubscribeOptions<D, S>;
  /** the last (epoch, seq) delivered; null before the first */
  readonly position: Position | null;
  /** stop: unsubscribe, no more handlers called */
  close(): void;
}

// -- the client --------------------------------------------------------------------------

/** Where the client keeps positions and unanswered writes (see store.d.ts). */
export interface Store {
  readonly kind?: string;
  get(key: string): Promise<any>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  entries(prefix?: string): Promise<Array<[string, any]>>;
}

/** Encode and decode MessagePack (e.g. from @msgpack/msgpack); none is bundled. */
export interface Codec {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

export interface BackoffOptions {
  /** ms before the first reconnect (default 1000); it doubles each attempt */
  base?: number;
  /** the cap in ms (default 30000) */
  max?: number;
  /** ± fraction of spread (default 0.2) */
  jitter?: number;
}

export interface ClientOptions {
  /** the hub's base URL (default: the page's origin) */
  url?: string;
  /** the WebSocket URL (default: derived from `url`, path /ws) */
  wsUrl?: string;
  token?: string;
  /**
   * a fresh token: at the start when there is no `token`, at 80 % of a token's life, and
   * after a 4001 / 401. Throw an error with `status` 401 or 403 (or `permanent: true`),
   * or return null, when the user must sign in again: the client stops. Any other error
   * (the network, a 5xx) is retried on the backoff schedule.
   */
  getToken?: () => string | null | Promise<string | null>;
  /**
   * where positions (`persist` rooms) and unanswered writes are kept across reloads:
   * `openStore()` of store.js (IndexedDB, else memory), or any `Store`
   */
  store?: Store | Promise<Store>;
  /** ms a kept write may wait for a new page before it is dropped (default 12 h) */
  outboxTtl?: number;
  /** MessagePack on the WebSocket (HTTP stays JSON) */
  codec?: Codec;
  /** ms between application pings (default 15000) */
  pingInterval?: number;
  /** ms to wait for a pong before the link counts as dead (default 5000) */
  pongTimeout?: number;
  /** ms to wait for `connected` after opening (default 10000) */
  connectTimeout?: number;
  backoff?: BackoffOptions;
  /** failed WebSocket attempts in a row before long-polling (default 5) */
  pollAfterFailures?: number;
  /** seconds a long-poll waits (default 25) */
  pollWait?: number;
  /** RATE_LIMITED with a retry_after up to this many seconds is retried (default 5) */
  maxRetryAfter?: number;
  /** transports to use (default ["websocket", "polling"]) */
  transports?: Transport[];
  /** false: call connect() yourself (default true) */
  autoConnect?: boolean;
  /** console.debug what happens */
  debug?: boolean;
  /** for tests: replacements of the browser's globals (null: none) */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  window?: EventTarget | null;
  document?: (EventTarget & { visibilityState?: string }) | null;
  navigator?: { onLine?: boolean } | null;
}

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
  transport: Transport | null;
  code?: number;
  reason?: string;
}

export type TokenState =
  | "ok"        // the token is valid (as far as the client knows)
  | "renewing"  // getToken fails for now (network, 5xx): retried on the backoff schedule
  | "refused";  // getToken said no (sign in again): the client stops when the token ends

/** A write is answered for good (also writes restored from the store). */
export interface SettledEvent {
  id: string;
  frame: PendingWrite;
  /** it came from the store: written by an earlier page */
  restored: boolean;
  ack?: Ack | null;
  error?: RoomlogError | null;
}

export interface ClientEvents {
  state: StateEvent;
  token: { state: TokenState; error: unknown };
  settled: SettledEvent;
  connected: { user: string; role: string; expires: number };
  transport: { transport: Transport | null };
  closed: { code: number; reason: string };
  error: RoomlogError;
}

/** A write not acknowledged yet (sent, or waiting to be sent). */
export type PendingWrite =
  | { type: "publish"; room: string; id: string; data: unknown }
  | { type: "command"; room: string; id: string; name: string; args: Record<string, unknown>;
      expected_seq?: number };

export declare class RoomlogClient {
  constructor(options?: ClientOptions);
  readonly state: ConnectionState;
  readonly transport: Transport | null;
  /** from the last `connected` */
  readonly user: string | null;
  readonly role: string | null;
  /** the token's expiry, Unix seconds */
  readonly expires: number | null;
  /** the last close code of the WebSocket */
  readonly closeCode: number | null;
  readonly token: string | null;
  /** writes not acknowledged yet, oldest first */
  readonly pending: PendingWrite[];
  readonly tokenState: TokenState;
  /** the store in use, once ready (null: none) */
  readonly store: Store | null;
  /** resolves once the token and the store are ready, with the writes restored from it */
  readonly ready: Promise<PendingWrite[]>;

  on<K extends keyof ClientEvents>(event: K, listener: (detail: ClientEvents[K]) => void):
    () => void;
  off<K extends keyof ClientEvents>(event: K, listener: (detail: ClientEvents[K]) => void): void;

  connect(): void;
  /** for good: no reconnect; unsent writes reject with CLOSED */
  close(): void;
  /** replace the token (sent on the open connection too) */
  setToken(token: string): void;
  /** check the link now (the client does it when the page becomes visible) */
  checkNow(): void;

  subscribe<D = any, S = any>(room: string, options?: SubscribeOptions<D, S>):
    Subscription<D, S>;
  unsubscribe(room: string): void;

  /** a domain command; resolves with its ack, rejects with a RoomlogError */
  command<R = any>(room: string, name: string, args?: Record<string, unknown>,
    options?: { id?: string; expectedSeq?: number }): Promise<Ack<R>>;
  /** publish to a room; resolves with its ack, rejects with a RoomlogError */
  publish(room: string, data: unknown, options?: { id?: string }): Promise<Ack>;

  /** an HTTP call to the hub with the current token (JSON unless raw; `as: "blob"`: bytes) */
  request<T = any>(method: string, path: string, body?: unknown,
    options?: { headers?: Record<string, string>; raw?: boolean; as?: "json" | "blob" }):
    Promise<T>;
  /** `/v1/rooms/{room}`, encoded */
  roomPath(room: string): string;
}

export default RoomlogClient;

// -- the pure parts -------------------------------------------------------------------------

/** One frame or an array of frames: always an array of frames. */
export declare function flattenFrames(decoded: unknown): Array<{ type: string; [k: string]: any }>;

/** What to do after a close code: stop, reconnect with a fresh token, at once, or backoff. */
export declare function closeAction(code: number): "stop" | "token" | "now" | "retry";

/** ms before reconnect attempt `attempt` (0-based): 1, 2, 4, 8, 16, then 30 s, ± jitter. */
export declare function backoffDelay(attempt: number,
  options?: BackoffOptions & { random?: () => number }): number;

/** The claims of a JWT (`sub`, `role`, `exp`...), read without verifying; null if not one. */
export declare function tokenClaims(token: string | null | undefined):
  ({ sub?: string; role?: string; exp?: number; [claim: string]: unknown }) | null;

/** Whether a getToken failure is final (401, 403, permanent, no token) or worth a retry. */
export declare function tokenRefusal(error: unknown): boolean;

/** ms before a rejected write is sent again, or null: reject it. */
export declare function retryDelay(code: string, retryAfter: number | null | undefined,
  attempts: number, options?: { maxRetryAfter?: number }): number | null;

/** One room's position and order: dedup by seq, gaps held back, resets. */
export declare class RoomCursor {
  constructor(position?: Position | null);
  readonly position: Position | null;
  /** the seq to read up to after a backfilling reset, or null */
  until: number | null;
  start(epoch: string, seq: number): boolean;
  push<F extends MessageFrame | SkipFrame>(frame: F): Array<MessageFrame | SkipFrame>;
  reset(frame: ResetFrame, options?: { backfill?: boolean }):
    Array<ResetFrame | MessageFrame | SkipFrame>;
  /** null, or where the missing frames must be read from */
  readonly gap: { epoch: string; after: number } | null;
}
