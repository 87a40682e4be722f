import type { MessageFields } from './framing.js';

/** What a {@link Message} needs from its client to settle itself. */
export interface Settler {
  /** Sends `ACK`/`NACK`/`REJECT`/`TOUCH` for a delivery of connection generation `gen`. */
  settle(gen: number, parts: string[]): Promise<void>;
}

/** Options of {@link Message.nack}. */
export interface NackOptions {
  /** Put the message back in its queue (default `true`); `false` dead-letters or drops it, like {@link Message.reject}. */
  requeue?: boolean;
  /** Hold the requeued message back this many milliseconds (`NACK delay=`). */
  delay?: number;
}

/**
 * A delivery: a `MSG` of a subscription or of a `GET`. With manual acks,
 * settle it once with {@link ack}, {@link nack} or {@link reject}; until
 * then it counts against the subscription's prefetch. Deliveries are
 * tied to the connection they came on: if that connection is lost, the
 * broker puts them back and redelivers them (flagged `redelivered`), and
 * settling them here rejects with a `ConnectionError`.
 */
export class Message implements MessageFields {
  consumerTag!: string;
  deliveryTag!: number;
  exchange!: string;
  routingKey!: string;
  rawRoutingKey!: Buffer;
  redelivered!: boolean;
  deliveries!: number;
  id!: string;
  group: string | undefined;
  offset: number | undefined;
  partition: number | undefined;
  headers!: Record<string, string>;
  rawHeaders!: Array<[string, Buffer]>;
  body!: Buffer;
  /** The queue (or stream) it was taken from. */
  readonly queue: string;
  /** Whether it must be settled (`ack=manual`). */
  readonly manual: boolean;
  readonly #settler: Settler;
  readonly #gen: number;

  /** @internal */
  constructor(fields: MessageFields, queue: string, manual: boolean, settler: Settler, gen: number) {
    Object.assign(this, fields);
    this.queue = queue;
    this.manual = manual;
    this.#settler = settler;
    this.#gen = gen;
  }

  /** @internal The connection generation it came on. */
  get generation(): number {
    return this.#gen;
  }

  /** The body decoded as UTF-8. */
  text(): string {
    return this.body.toString('utf8');
  }

  /** The body parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }

  private send(parts: string[]): Promise<void> {
    if (!this.manual) {
      return Promise.reject(new TypeError('an ack=auto delivery is already acknowledged'));
    }
    return this.#settler.settle(this.#gen, parts);
  }

  /** Acknowledges it (`ACK`): the message is done. Resolves once the server has it (on disk, if persistent). */
  ack(): Promise<void> {
    return this.send(['ACK', String(this.deliveryTag)]);
  }

  /**
   * Gives it back (`NACK`): requeued at its position, flagged `redelivered`
   * (after `delay` ms if given); or with `requeue: false`, dead-lettered.
   */
  async nack(options: NackOptions = {}): Promise<void> {
    const parts = ['NACK', String(this.deliveryTag)];
    if (options.requeue === false) {
      if (options.delay !== undefined) throw new TypeError('nack: delay needs requeue');
      parts.push('requeue=false');
    }
    if (options.delay !== undefined) parts.push(`delay=${checkMs(options.delay, 'delay')}`);
    return this.send(parts);
  }

  /** Rejects it (`REJECT`): dead-lettered (reason `rejected`), or dropped when its queue has no dead-letter exchange. */
  reject(): Promise<void> {
    return this.send(['REJECT', String(this.deliveryTag)]);
  }

  /** Restarts its ack timeout (`TOUCH`). */
  touch(): Promise<void> {
    return this.send(['TOUCH', String(this.deliveryTag)]);
  }
}

/** A message shown by `PEEK`: nothing was delivered, so there is nothing to settle. */
export class PeekedMessage implements Omit<MessageFields, 'consumerTag' | 'deliveryTag'> {
  /** Its position in the queue (usable as `peek(..., {from})`); on a stream, its offset. */
  position: number;
  exchange!: string;
  routingKey!: string;
  rawRoutingKey!: Buffer;
  redelivered!: boolean;
  /** How often it has been delivered so far. */
  deliveries!: number;
  id!: string;
  group: string | undefined;
  offset: number | undefined;
  partition: number | undefined;
  headers!: Record<string, string>;
  rawHeaders!: Array<[string, Buffer]>;
  body!: Buffer;

  /** @internal */
  constructor(fields: MessageFields) {
    const { consumerTag: _c, deliveryTag, ...rest } = fields;
    Object.assign(this, rest);
    this.position = deliveryTag;
  }

  /** The body decoded as UTF-8. */
  text(): string {
    return this.body.toString('utf8');
  }

  /** The body parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

/** @internal */
export function checkMs(v: number, what: string): string {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new TypeError(`${what}: expected a whole number of milliseconds >= 0, got ${v}`);
  }
  return String(v);
}
