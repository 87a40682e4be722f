/**
 * sluice-client: a Node.js client for the sluice message broker.
 *
 * ```ts
 * import { Client } from 'sluice-client';
 * const client = await Client.connect({ addresses: ['127.0.0.1:5680'] });
 * await client.declare('jobs', { durable: true });
 * const { id, routed } = await client.publish('', 'jobs', 'hello');
 * for await (const msg of await client.subscribe('jobs', { prefetch: 10 })) {
 *   console.log(msg.text());
 *   await msg.ack();
 * }
 * ```
 */
export {
  Client,
  type BindOptions,
  type Confirm,
  type ConnectOptions,
  type DeclareOptions,
  type ExchangeOptions,
  type GetOptions,
  type PublishOptions,
  type QueueInfo,
  type ReconnectOptions,
  type SeekTarget,
  type TlsOptions,
} from './client.js';
export { Message, PeekedMessage, type NackOptions } from './message.js';
export { Subscription, type SubscribeOptions } from './subscription.js';
export { ClientClosedError, ConnectionError, ERROR_CODES, SluiceError, type ErrorCode } from './errors.js';
export { ProtocolError, type MessageFields } from './framing.js';
