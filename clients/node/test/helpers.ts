// Test helpers: a real `sluice serve` on port 0, deadlines, polling.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Message, Subscription } from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The broker binary: SLUICE_BIN, else the repository's debug build. */
export const SLUICE_BIN = process.env['SLUICE_BIN']
  ? path.resolve(process.env['SLUICE_BIN'])
  : path.resolve(here, '../../../target/debug/sluice');

const live = new Set<ChildProcess>();
process.on('exit', () => {
  // Never leave a broker behind, whatever happened to the tests.
  for (const p of live) p.kill('SIGKILL');
});

export function tempDir(prefix = 'sluice-node-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface ServerOptions {
  /** Default: a new temporary directory (removed by `stop` unless given). */
  dataDir?: string;
  /** Default `127.0.0.1:0`. */
  addr?: string;
  tls?: { cert: string; key: string; addr?: string };
  args?: string[];
}

export interface Server {
  addr: string;
  tlsAddr: string | undefined;
  dataDir: string;
  pid: number;
  /** SIGTERM, and wait for the exit (SIGKILL after 15 s). Resolves with the exit code. */
  stop(): Promise<number | null>;
  /** The broker's stderr so far (for failure messages). */
  log(): string;
}

/** Starts `sluice serve` and reads its address from the `listening on` line. */
export async function startServer(opts: ServerOptions = {}): Promise<Server> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? tempDir();
  const args = ['serve', '--addr', opts.addr ?? '127.0.0.1:0', '--data-dir', path.join(dataDir, 'data')];
  if (opts.tls) {
    args.push('--tls-cert', opts.tls.cert, '--tls-key', opts.tls.key, '--tls-addr', opts.tls.addr ?? '127.0.0.1:0');
  }
  args.push(...(opts.args ?? []));
  const proc = spawn(SLUICE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let stderr = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (s: string) => {
    stderr = (stderr + s).slice(-20000);
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.on('exit', (code) => {
      live.delete(proc);
      resolve(code);
    });
  });
  let stdout = '';
  const ready = new Promise<{ addr: string; tlsAddr: string | undefined }>((resolve, reject) => {
    proc.on('error', (e) => reject(new Error(`cannot run ${SLUICE_BIN}: ${e.message} (set SLUICE_BIN)`)));
    void exited.then((code) => reject(new Error(`sluice serve exited (${code}) before listening:\n${stderr}`)));
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (s: string) => {
      stdout += s;
      const addr = /^listening on (\S+)$/m.exec(stdout)?.[1];
      const tlsAddr = /^listening tls on (\S+)$/m.exec(stdout)?.[1];
      if (addr && (!opts.tls || tlsAddr)) resolve({ addr, tlsAddr });
    });
  });
  let got: { addr: string; tlsAddr: string | undefined };
  try {
    got = await within(ready, 15000, 'the broker to listen');
  } catch (e) {
    proc.kill('SIGKILL');
    if (ownDir) removeDir(dataDir);
    throw e;
  }
  let stopping: Promise<number | null> | undefined;
  return {
    ...got,
    dataDir,
    pid: proc.pid!,
    log: () => stderr,
    stop() {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
        const code = await exited;
        clearTimeout(t);
        if (ownDir) removeDir(dataDir);
        return code;
      })();
      return stopping;
    },
  };
}

/** `p`, or a rejection naming `what` after `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

/** The subscription's next message, failing after `ms`. */
export async function nextMessage(sub: Subscription, ms = 5000): Promise<Message> {
  const r = await within(sub.next(), ms, `a message on ${sub.queue}`);
  if (r.done) throw new Error(`subscription to ${sub.queue} ended`);
  return r.value;
}

/** Polls `cond` every 10 ms until it holds; fails after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A queue name unique to this process. */
let n = 0;
export function uniq(prefix: string): string {
  return `${prefix}-${process.pid}-${++n}`;
}
