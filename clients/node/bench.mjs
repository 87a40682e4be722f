#!/usr/bin/env node
// A small throughput benchmark of the Node client, shaped like `sluice bench queue`
// (1 publisher connection, 1 consumer connection, one non-durable queue, manual acks):
// publish N messages of SIZE bytes through the pipelined window, consume and ack them.
//
//   npm run build
//   node bench.mjs [--addr 127.0.0.1:5680] [--count 100000] [--size 100] [--window 1000] [--prefetch 100] [--persistent]
//
// The address defaults to SLUICE_ADDR, else 127.0.0.1:5680. Prints msgs/s.
import { Client } from './dist/index.js';

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
}
const addr = opt('addr', process.env.SLUICE_ADDR ?? '127.0.0.1:5680');
const count = Number(opt('count', 100000));
const size = Number(opt('size', 100));
const window = Number(opt('window', 1000));
const prefetch = Number(opt('prefetch', 100));
const persistent = args.includes('--persistent');

const pub = await Client.connect({ addresses: [addr], name: 'bench-pub', window, reconnect: false });
const con = await Client.connect({ addresses: [addr], name: 'bench-con', reconnect: false });
const queue = `bench-node-${process.pid}-${Date.now().toString(16)}`;
await pub.declare(queue, { durable: persistent });

const body = Buffer.alloc(size, 'x');
const sub = await con.subscribe(queue, { prefetch });
let consumedAt = 0;
const consumed = (async () => {
  let n = 0;
  for await (const m of sub) {
    m.ack().catch((e) => {
      console.error('ack failed:', e);
      process.exit(1);
    });
    if (++n === count) {
      consumedAt = performance.now();
      break;
    }
  }
})();

const t0 = performance.now();
const confirms = [];
for (let i = 0; i < count; i++) confirms.push(pub.publish('', queue, body));
const results = await Promise.all(confirms);
const published = performance.now();
const routed = results.reduce((a, r) => a + r.routed, 0);
if (routed !== count) throw new Error(`routed ${routed} of ${count}`);
await consumed;
await con.ping(); // the last acks are in
const done = performance.now();

const rate = (n, ms) => Math.round(n / (ms / 1000)).toLocaleString('en-US');
console.log(
  `node client: ${count} x ${size} B ${persistent ? 'persistent' : 'transient'}, window ${window}, prefetch ${prefetch}`,
);
console.log(`  published (confirmed): ${rate(count, published - t0)} msgs/s in ${((published - t0) / 1000).toFixed(2)} s`);
console.log(`  consumed (acked):      ${rate(count, consumedAt - t0)} msgs/s in ${((consumedAt - t0) / 1000).toFixed(2)} s`);
console.log(`  end to end:            ${((done - t0) / 1000).toFixed(2)} s`);

await pub.delete(queue);
await pub.close();
await con.close();
