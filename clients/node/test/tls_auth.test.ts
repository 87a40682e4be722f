// TLS (a self-signed certificate made with the openssl CLI), AUTH, and heartbeats.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Client, ConnectionError, SluiceError } from '../dist/index.js';
import { nextMessage, removeDir, SLUICE_BIN, startServer, tempDir, uniq, until, within, type Server } from './helpers.js';

describe('TLS and AUTH', () => {
  let dir: string;
  let server: Server;
  let ca: Buffer;

  before(async () => {
    dir = tempDir();
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-addext', 'basicConstraints=critical,CA:FALSE',
        '-keyout', key, '-out', cert,
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(cert);
    // A user, added on the data directory before the broker starts.
    execFileSync(
      SLUICE_BIN,
      ['user', 'add', 'app', '--admin', '--password', 'right pass', '--data-dir', path.join(dir, 'data')],
      { stdio: 'ignore' },
    );
    server = await startServer({ dataDir: dir, tls: { cert, key } });
  });

  after(async () => {
    await server?.stop();
    removeDir(dir);
  });

  test('over TLS with the CA, logged in: publish and consume', async () => {
    const c = await Client.connect({
      addresses: [server.tlsAddr!],
      tls: { ca },
      user: 'app',
      password: 'right pass',
      reconnect: false,
    });
    try {
      const q = uniq('secure');
      await c.declare(q);
      const body = Buffer.from([0, 1, 2, 0x0d, 0x0a, 0xff]);
      assert.equal((await c.publish('', q, body)).routed, 1);
      const sub = await c.subscribe(q);
      const m = await nextMessage(sub);
      assert.ok(m.body.equals(body));
      await m.ack();
    } finally {
      await c.close();
    }
  });

  test('a wrong password rejects with SluiceError NOAUTH', async () => {
    await assert.rejects(
      Client.connect({ addresses: [server.tlsAddr!], tls: { ca }, user: 'app', password: 'wrong', reconnect: false }),
      (e: unknown) => {
        assert.ok(e instanceof SluiceError, String(e));
        assert.equal(e.code, 'NOAUTH');
        return true;
      },
    );
  });

  test('without logging in, commands get NOAUTH', async () => {
    const c = await Client.connect({ addresses: [server.addr], reconnect: false });
    try {
      await c.ping(); // allowed before AUTH
      await assert.rejects(c.declare(uniq('nope')), { name: 'SluiceError', code: 'NOAUTH' });
    } finally {
      await c.close();
    }
  });

  test('a certificate the client does not trust fails the connection', async () => {
    await assert.rejects(
      Client.connect({ addresses: [server.tlsAddr!], tls: true, user: 'app', password: 'right pass', reconnect: false }),
      (e: unknown) => {
        assert.ok(e instanceof ConnectionError, String(e));
        assert.match(String((e as Error).cause), /self[- ]signed|certificate/i);
        return true;
      },
    );
  });

  test('TLS to the plain port fails, and plain text to the TLS port fails', async () => {
    await assert.rejects(
      Client.connect({ addresses: [server.addr], tls: { ca }, reconnect: false, connectTimeout: 5000 }),
      ConnectionError,
    );
    await assert.rejects(
      Client.connect({ addresses: [server.tlsAddr!], reconnect: false, connectTimeout: 1500 }),
      ConnectionError,
    );
  });
});

describe('heartbeats', () => {
  let server: Server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('an idle connection with heartbeats stays up, and hears NOTICE heartbeat', async () => {
    const c = await Client.connect({ addresses: [server.addr], heartbeat: 200, reconnect: false });
    let beats = 0;
    let lost = false;
    c.on('notice', (t: string) => {
      if (t === 'heartbeat') beats++;
    });
    c.on('disconnected', () => {
      lost = true;
    });
    // Idle for several intervals: the broker would drop a silent client after two.
    await until(() => beats >= 4, 5000, 'four heartbeats from the broker');
    assert.equal(lost, false);
    assert.equal(c.connected, true);
    await c.ping();
    await c.close();
  });

  test('a server that goes silent is dropped after two intervals', async () => {
    // A fake broker: greets, answers HELLO, then says nothing more.
    const sockets: net.Socket[] = [];
    const fake = net.createServer((s) => {
      sockets.push(s);
      s.write('HELLO sluice 0.1.0 proto=1\r\n');
      s.once('data', () => s.write('OK sluice 0.1.0 proto=1\r\n'));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as net.AddressInfo).port;
    try {
      const c = await Client.connect({ addresses: [`127.0.0.1:${port}`], heartbeat: 150, reconnect: false });
      const started = Date.now();
      const closed = new Promise<unknown>((r) => c.once('close', r));
      const err = await within(closed, 3000, 'the client to drop the silent server');
      assert.ok(err instanceof ConnectionError);
      assert.match(err.message, /heartbeat/);
      assert.ok(Date.now() - started >= 250, 'not before two intervals');
    } finally {
      for (const s of sockets) s.destroy();
      fake.close();
    }
  });
});
