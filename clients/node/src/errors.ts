/**
 * Errors: {@link SluiceError} for an `ERR` reply (its `.code` is the
 * server's stable code), {@link ConnectionError} when the connection
 * failed or was lost before the reply came.
 */

/** The `ERR` codes of protocol.md, section 12. */
export const ERROR_CODES = [
  'SYNTAX',
  'UNKNOWN_COMMAND',
  'NOT_FOUND',
  'PRECONDITION',
  'NO_ROUTE',
  'QUEUE_FULL',
  'TOO_LARGE',
  'LINE_TOO_LONG',
  'BAD_FRAME',
  'UNKNOWN_TAG',
  'NOAUTH',
  'FORBIDDEN',
  'LOCKED',
  'LIMIT',
  'INTERNAL',
  'UNAVAILABLE',
] as const;

/** A known `ERR` code. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * The server answered `ERR <code> <text>`. `code` is stable and meant for
 * programs; `serverMessage` is for people. A code this client does not know
 * is kept as it came (protocol.md: treat it like `INTERNAL`).
 */
export class SluiceError extends Error {
  override name = 'SluiceError';
  /** The server's code, e.g. `NO_ROUTE`, `NOAUTH`, `NOT_FOUND`. */
  readonly code: ErrorCode | (string & {});
  /** The server's human-readable text. */
  readonly serverMessage: string;
  /** The command that got this answer (its verb and first words; no bodies, no passwords). */
  readonly command: string | undefined;

  constructor(code: string, serverMessage: string, command?: string) {
    super(`${code} ${serverMessage}`.trim() + (command ? ` (${command})` : ''));
    this.code = code;
    this.serverMessage = serverMessage;
    this.command = command;
  }

  /** Whether `code` is one this client knows (else treat it like `INTERNAL`). */
  get known(): boolean {
    return (ERROR_CODES as readonly string[]).includes(this.code);
  }
}

/**
 * The connection failed, or was lost before this command's reply came.
 * For a `PUB`, that means the confirm is unknown: the message may or may
 * not have been stored. Deliveries received on a lost connection cannot be
 * acked any more: the broker puts them back and redelivers them.
 */
export class ConnectionError extends Error {
  override name = 'ConnectionError';
  readonly code = 'CONNECTION';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The client was closed ({@link Client.close}) before the command was answered. */
export class ClientClosedError extends ConnectionError {
  override name = 'ClientClosedError';
}

/** The server sent something this client cannot read; the connection is dropped. */
export { ProtocolError } from './framing.js';
