import { EventEmitter } from 'node:events';
import type { Message } from './message.js';

/** Options of `Client.subscribe`. */
export interface SubscribeOptions {
  /** Unacknowledged deliveries outstanding at most (`prefetch=`, 1 to 65535; server default 100). */
  prefetch?: number;
  /**
   * Body bytes of unacknowledged deliveries outstanding at most, as well as
   * `prefetch` (`prefetch-bytes=`, 1 to 1073741824; default: no byte bound).
   * A body larger than the whole budget still comes, alone, once nothing
   * else is outstanding.
   */
  prefetchBytes?: number;
  /** `manual` (default): settle each message; `auto`: acknowledged once sent. */
  ack?: 'manual' | 'auto';
  /** The consumer tag; default: one the client makes up (`node-<n>`). */
  tag?: string;
  /** Be the queue's only subscription. */
  exclusive?: boolean;
  /** A stream: where to start (`first`, `last`, `next` (default), or an offset). */
  offset?: 'first' | 'last' | 'next' | number;
  /** A stream: start at the first message published at or after this time (Unix ms, or a `Date`). */
  time?: number | Date;
  /** A stream: read as a member of this consumer group (its position is stored). */
  group?: string;
}

/** @internal What a subscription needs from its client. */
export interface SubscriptionOwner {
  unsubscribe(sub: Subscription): Promise<void>;
  /** Gives back deliveries the application never took (a cancelled subscription's buffer). */
  release(messages: Message[]): void;
}

type Waiter = {
  resolve: (r: IteratorResult<Message, undefined>) => void;
  reject: (e: unknown) => void;
};

/**
 * A subscription (`SUB`): an async iterator of {@link Message}s, for
 * `for await (const msg of sub)`. Leaving the loop (`break`, `return`, a
 * throw) cancels the subscription (`UNSUB`). It survives reconnects: the
 * client subscribes again on the new connection, and deliveries that were
 * buffered but not yet taken from the lost connection are dropped (the
 * broker redelivers them).
 *
 * Events: `active` and `inactive` (`NOTICE active|inactive`, with the
 * partition or `undefined`), `cancelled` (the server ended it, with the
 * reason, e.g. `queue-deleted`).
 */
export class Subscription extends EventEmitter implements AsyncIterableIterator<Message> {
  /** The queue or stream. */
  readonly queue: string;
  /** The consumer tag. */
  readonly tag: string;
  /** The options it was made with. */
  readonly options: Readonly<SubscribeOptions>;
  /** Why the server ended it (`NOTICE cancelled ... reason=`), if it did. */
  cancelReason: string | undefined;
  /** @internal The newest stream offset delivered (to resume a group-less stream reader after a reconnect). */
  lastOffset: number | undefined;
  /** @internal The server answered its first `SUB` (so a new connection subscribes it again). */
  confirmed = false;
  /** @internal A partition was seen (a partitioned stream: no single offset to resume from). */
  sawPartition = false;

  private buffer: Message[] = [];
  private waiters: Waiter[] = [];
  private done = false;
  private failure: unknown;
  private cancelling: Promise<void> | undefined;
  readonly #owner: SubscriptionOwner;

  /** @internal */
  constructor(owner: SubscriptionOwner, queue: string, tag: string, options: SubscribeOptions) {
    super();
    this.#owner = owner;
    this.queue = queue;
    this.tag = tag;
    this.options = Object.freeze({ ...options });
  }

  /** Deliveries received and not yet taken. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Whether it has ended (cancelled, or failed). */
  get closed(): boolean {
    return this.done;
  }

  /** @internal A delivery arrived. */
  push(msg: Message): void {
    if (this.done) {
      this.#owner.release([msg]);
      return;
    }
    if (msg.offset !== undefined) this.lastOffset = msg.offset;
    if (msg.partition !== undefined) this.sawPartition = true;
    const w = this.waiters.shift();
    if (w) w.resolve({ value: msg, done: false });
    else this.buffer.push(msg);
  }

  /** @internal The connection of generation `gen` was lost: its untaken deliveries will be redelivered. */
  dropGeneration(gen: number): void {
    this.buffer = this.buffer.filter((m) => m.generation !== gen);
  }

  /** @internal Ends it: waiters get `done` (or `error`); untaken deliveries are released. */
  end(error?: unknown, reason?: string): void {
    if (this.done) return;
    this.done = true;
    this.failure = error;
    if (reason !== undefined) {
      this.cancelReason = reason;
      this.emit('cancelled', reason);
    }
    const left = this.buffer;
    this.buffer = [];
    if (left.length > 0) this.#owner.release(left);
    for (const w of this.waiters.splice(0)) {
      if (error !== undefined) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** The next delivery; waits for one. `done` once the subscription has ended. */
  next(): Promise<IteratorResult<Message, undefined>> {
    const m = this.buffer.shift();
    if (m) return Promise.resolve({ value: m, done: false });
    if (this.done) {
      if (this.failure !== undefined) return Promise.reject(this.failure);
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Called when a `for await` loop is left early: cancels the subscription. */
  async return(): Promise<IteratorResult<Message, undefined>> {
    await this.cancel();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * Ends the subscription (`UNSUB`). Deliveries it buffered that the
   * application never took are given back (`NACK`, requeued at their
   * position); those already taken stay outstanding until settled.
   */
  cancel(): Promise<void> {
    if (this.done) return Promise.resolve();
    this.cancelling ??= this.#owner.unsubscribe(this).finally(() => this.end());
    return this.cancelling;
  }
}
