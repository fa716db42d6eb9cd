/**
 * What the primary process and its data-path workers say to each other over the IPC channel
 * (`child_process.fork` with `serialization: 'advanced'`, so Buffers and Dates keep their
 * types). A worker never sees the store, the engine or the audit log: it asks the primary
 * through these messages, exactly what a door asks of its GatewayPort.
 */
import type { AddressInfo } from 'node:net';
import type { ListenerConfig } from '../broker/adapter.js';
import type { TerminationReason } from '../core/model.js';
import type { SessionFacts } from '../broker/port.js';
import type { Refusal, RefusalCode } from '../broker/refusals.js';

/** A listener as a worker rebuilds it: the door, its options and the parts of ListenerConfig a door reads. */
export interface ListenSpec {
  /** The primary's number for this listener; every message about it carries it. */
  listener: number;
  door: string;
  options: Record<string, unknown>;
  /** The primary wants every Query/Parse (its adapter options had `onStatement`). */
  statements: boolean;
  /** ListenerConfig less what cannot cross a process boundary (the broker, the logger) or is the worker's own (dataPath). */
  config: Omit<ListenerConfig, 'broker' | 'log' | 'dataPath'>;
  address: AddressInfo;
  protocol: string;
  loginExample: string;
}

/** Port methods a worker calls on the primary (GatewayPort, minus what it answers itself). */
export type PortMethod = 'login' | 'knowsKey' | 'needsMfa' | 'open' | 'verifyTarget';

/** The session a decision opened, as a worker's door sees it. */
export interface SessionView {
  id: string;
  user: string;
  resource: unknown;
  credentials: unknown;
  deadline: Date | undefined;
}

/** An error crossing the channel; UpstreamError keeps its kind, what the target said and its hint. */
export interface WireError {
  name: string;
  message: string;
  kind?: string;
  targetSaid?: unknown;
  hint?: string;
  /** Other own fields with plain values (a GatehouseError's `code`, a ValidationError's `field`). */
  fields?: Record<string, string | number | boolean>;
}

export type ToWorker =
  | { t: 'listen'; spec: ListenSpec; index: number; count: number; logLevel: string }
  | { t: 'unlisten'; listener: number }
  /** Sent with the client socket as the handle. */
  | { t: 'conn'; listener: number }
  | { t: 'reply'; call: number; ok: true; value: unknown }
  | { t: 'reply'; call: number; ok: false; error: WireError }
  /** Sessions the broker ended, closed in one go: [session, reason, message]. */
  | { t: 'close'; sessions: Array<[string, TerminationReason, string]> }
  | { t: 'warn'; session: string; message: string }
  | { t: 'door'; listener: number; payload: unknown }
  /** Answered with a pong: a worker that stops answering is taken for hung. */
  | { t: 'ping' }
  | { t: 'stop' };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'pong' }
  /** The door serves the listener, or could not (`error`: its listen() rejected). */
  | { t: 'listening'; listener: number; error?: WireError }
  | { t: 'call'; call: number; listener: number; method: PortMethod; args: unknown[] }
  | { t: 'live'; call: number; session: string; facts: SessionFacts }
  | { t: 'discard'; session: string; code: RefusalCode; detail: string }
  | { t: 'operation'; session: string; facts: SessionFacts }
  | { t: 'end'; session: string; reason: TerminationReason; message: string | undefined; bytesIn: number; bytesOut: number }
  /** Sessions of a `close`, closed, with their final byte counts: [session, in, out]. */
  | { t: 'closed'; sessions: Array<[string, number, number]> }
  /** Byte counts of live sessions that moved since the last report: [session, in, out]. */
  | { t: 'bytes'; sessions: Array<[string, number, number]> }
  | { t: 'refused'; listener: number; client: string; refusal: Refusal; detail: string | undefined }
  | { t: 'statements'; listener: number; events: unknown[] }
  | { t: 'stats'; listener: number; delta: Record<string, number> }
  /** Connections handed over that no longer count, per listener, since the last such message: [listener, n]. */
  | { t: 'released'; counts: Array<[number, number]> }
  | { t: 'door'; listener: number; to: number; payload: unknown };
