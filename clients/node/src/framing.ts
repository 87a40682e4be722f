/**
 * The sluice wire format, with no I/O: framing server output into lines and
 * literals, splitting a line into words (quote-aware), quoting words for
 * command lines, and parsing `MSG` pushes and `OK`/`ERR` replies.
 *
 * Everything here works on bytes (`Buffer`): routing keys, header values and
 * bodies are binary-safe, and a literal is read by counting its bytes, never
 * by looking for a delimiter inside it (protocol.md, section 3).
 */

/** One server frame: a line (without its end of line) and its literal, if it announced one. */
export interface Frame {
  line: Buffer;
  body: Buffer | undefined;
}

/** The server sent bytes that cannot be framed or parsed. The connection cannot go on. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;

function isBlank(b: number): boolean {
  return b === SPACE || b === TAB;
}

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}

/**
 * The literal a line announces: its byte count when the line's last word is
 * `{N}` (after dropping trailing blanks, the line ends in `{digits}` with the
 * `{` at the start or right after a blank), else `undefined`. Purely
 * lexical, as protocol.md specifies: a quoted `"{5}"` ends in a quote and so
 * announces nothing.
 */
export function literalLength(line: Uint8Array): number | undefined {
  let end = line.length;
  while (end > 0 && isBlank(line[end - 1]!)) end--;
  if (end < 3 || line[end - 1] !== RBRACE) return undefined;
  let i = end - 2;
  while (i >= 0 && isDigit(line[i]!)) i--;
  const digits = end - 2 - i;
  if (digits === 0 || i < 0 || line[i] !== LBRACE) return undefined;
  if (i > 0 && !isBlank(line[i - 1]!)) return undefined;
  let n = 0;
  for (let j = i + 1; j < end - 1; j++) {
    n = n * 10 + (line[j]! - 0x30);
  }
  if (!Number.isSafeInteger(n)) {
    throw new ProtocolError(`literal length of ${digits} digits is too large`);
  }
  return n;
}

export interface FrameReaderLimits {
  /** Longest line accepted from the server, in bytes (default 16 MiB). */
  maxLine?: number;
  /** Largest literal accepted from the server, in bytes (default 1 GiB). */
  maxLiteral?: number;
}

/**
 * Cuts a byte stream into frames. Feed it chunks as they arrive
 * ({@link FrameReader.push}) and take the complete frames
 * ({@link FrameReader.next}). A literal is copied once into a buffer of its
 * announced size, so a large body arriving in many chunks costs linear time.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Searched up to here for LF already (relative to the buffer). */
  private scanned = 0;
  /** The line whose literal is being read. */
  private pendingLine: Buffer | undefined;
  private body: Buffer | undefined;
  private filled = 0;
  /** After the literal's bytes: waiting for its end of line. */
  private needEol = false;
  private readonly maxLine: number;
  private readonly maxLiteral: number;

  constructor(limits: FrameReaderLimits = {}) {
    this.maxLine = limits.maxLine ?? 16 * 1024 * 1024;
    this.maxLiteral = limits.maxLiteral ?? 1024 * 1024 * 1024;
  }

  /** Bytes received and not yet framed. */
  get buffered(): number {
    return this.buf.length - this.pos;
  }

  /** Adds bytes received from the server. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.body !== undefined && !this.needEol) {
      // Copy straight into the literal's buffer.
      const take = Math.min(chunk.length, this.body.length - this.filled);
      chunk.copy(this.body, this.filled, 0, take);
      this.filled += take;
      if (this.filled === this.body.length) this.needEol = true;
      chunk = chunk.subarray(take);
      if (chunk.length === 0) return;
    }
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
      this.pos = 0;
      this.scanned = 0;
    } else {
      const rest = this.buf.subarray(this.pos);
      this.buf = Buffer.concat([rest, chunk]);
      this.scanned -= this.pos;
      this.pos = 0;
    }
  }

  /** The next complete frame, or `undefined` until more bytes arrive. */
  next(): Frame | undefined {
    for (;;) {
      if (this.body !== undefined) {
        if (!this.needEol) {
          const take = Math.min(this.buf.length - this.pos, this.body.length - this.filled);
          if (take > 0) {
            this.buf.copy(this.body, this.filled, this.pos, this.pos + take);
            this.filled += take;
            this.pos += take;
          }
          if (this.filled < this.body.length) return undefined;
          this.needEol = true;
        }
        const avail = this.buf.length - this.pos;
        if (avail === 0) return undefined;
        const b0 = this.buf[this.pos]!;
        if (b0 === LF) {
          this.pos += 1;
        } else if (b0 === CR) {
          if (avail < 2) return undefined;
          if (this.buf[this.pos + 1] !== LF) {
            throw new ProtocolError('no end of line after a literal');
          }
          this.pos += 2;
        } else {
          throw new ProtocolError('no end of line after a literal');
        }
        const frame: Frame = { line: this.pendingLine!, body: this.body };
        this.pendingLine = undefined;
        this.body = undefined;
        this.filled = 0;
        this.needEol = false;
        this.scanned = this.pos;
        return frame;
      }
      const from = Math.max(this.pos, this.scanned);
      const nl = this.buf.indexOf(LF, from);
      if (nl < 0) {
        this.scanned = this.buf.length;
        if (this.buf.length - this.pos > this.maxLine) {
          throw new ProtocolError(`server line longer than ${this.maxLine} bytes`);
        }
        return undefined;
      }
      let end = nl;
      if (end > this.pos && this.buf[end - 1] === CR) end--;
      // Copy: the line outlives the chunk it came in.
      const line = Buffer.from(this.buf.subarray(this.pos, end));
      this.pos = nl + 1;
      this.scanned = this.pos;
      if (this.pos >= this.buf.length) {
        this.buf = Buffer.alloc(0);
        this.pos = 0;
        this.scanned = 0;
      }
      const n = literalLength(line);
      if (n === undefined) {
        if (line.length === 0) continue; // blank lines carry nothing
        return { line, body: undefined };
      }
      if (n > this.maxLiteral) {
        throw new ProtocolError(`server literal of ${n} bytes exceeds ${this.maxLiteral}`);
      }
      this.pendingLine = line;
      this.body = Buffer.allocUnsafe(n);
      this.filled = 0;
      this.needEol = n === 0;
    }
  }
}

function view(line: Uint8Array, start: number, end: number): Buffer {
  return Buffer.from(line.buffer, line.byteOffset + start, end - start);
}

/**
 * Reads a quoted part whose opening quote is at `i - 1`: returns its bytes
 * (unescaped) and the index after the closing quote.
 */
function readQuoted(line: Uint8Array, i: number): [Buffer, number] {
  const n = line.length;
  // Fast path: no escapes, the bytes are a view of the line.
  let j = i;
  while (j < n && line[j] !== QUOTE && line[j] !== BACKSLASH) j++;
  if (j < n && line[j] === QUOTE) return [view(line, i, j), j + 1];
  const bytes: number[] = Array.from(line.subarray(i, j));
  while (j < n) {
    const c = line[j]!;
    if (c === QUOTE) return [Buffer.from(bytes), j + 1];
    if (c === BACKSLASH) {
      const e = line[j + 1];
      if (e !== QUOTE && e !== BACKSLASH) throw new ProtocolError('bad escape in a quoted word');
      bytes.push(e);
      j += 2;
      continue;
    }
    bytes.push(c);
    j++;
  }
  throw new ProtocolError('unbalanced quote');
}

/**
 * Splits a line into words on spaces and tabs. A word may be double-quoted
 * (`"two words"`, `""` for the empty word) with `\"` and `\\` escapes
 * inside; the quotes are removed. An option's value may be quoted the same
 * way (`h.note="a b"` is the word `h.note=a b`). Words are returned as bytes
 * (views of `line` where no escape had to be undone).
 */
export function tokenize(line: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const n = line.length;
  let i = 0;
  while (i < n) {
    const b = line[i]!;
    if (isBlank(b)) {
      i++;
      continue;
    }
    let word: Buffer;
    if (b === QUOTE) {
      [word, i] = readQuoted(line, i + 1);
    } else {
      const start = i;
      while (i < n && !isBlank(line[i]!) && !(line[i] === QUOTE && i > start && line[i - 1] === 0x3d)) i++;
      if (i >= n || isBlank(line[i]!)) {
        out.push(view(line, start, i));
        continue;
      }
      // `name="quoted value"`: the name part as it is, then the value unquoted.
      const [value, next] = readQuoted(line, i + 1);
      word = Buffer.concat([view(line, start, i), value]);
      i = next;
    }
    if (i < n && !isBlank(line[i]!)) throw new ProtocolError('a closing quote must be followed by a blank');
    out.push(word);
  }
  return out;
}

/** Splits a line into words, each decoded as UTF-8. */
export function tokenizeText(line: Uint8Array): string[] {
  return tokenize(line).map((w) => w.toString('utf8'));
}

function toBytes(word: string | Uint8Array): Buffer {
  if (typeof word === 'string') return Buffer.from(word, 'utf8');
  return Buffer.isBuffer(word) ? word : Buffer.from(word.buffer, word.byteOffset, word.byteLength);
}

function looksLikeLiteral(w: Buffer): boolean {
  return w.length >= 3 && literalLength(w) !== undefined;
}

function needsQuotes(w: Buffer): boolean {
  if (w.length === 0) return true;
  for (const b of w) {
    if (b <= 0x20 || b === 0x7f || b === QUOTE || b === BACKSLASH || b === 0x3d /* = */) {
      return true;
    }
  }
  return looksLikeLiteral(w);
}

function checkEncodable(w: Buffer, what: string): void {
  for (const b of w) {
    if (b === 0 || b === CR || b === LF) {
      throw new TypeError(`${what} cannot hold a NUL, CR or LF byte`);
    }
  }
}

/**
 * A word for a command line, quoted when it must be (empty, blanks, quotes,
 * backslashes, `=`, control bytes, or something that looks like `{N}`), else
 * as it is. A quoted word is always positional, never an option or a
 * literal mark. NUL, CR and LF cannot be sent in a word at all.
 */
export function encodeWord(word: string | Uint8Array, what = 'a word'): Buffer {
  const w = toBytes(word);
  checkEncodable(w, what);
  if (!needsQuotes(w)) return w;
  return quoteBytes(w);
}

/** Always quotes (what a positional argument that is data should be). */
export function quoteBytes(w: Buffer): Buffer {
  let extra = 2;
  for (const b of w) if (b === QUOTE || b === BACKSLASH) extra++;
  const out = Buffer.allocUnsafe(w.length + extra);
  let j = 0;
  out[j++] = QUOTE;
  for (const b of w) {
    if (b === QUOTE || b === BACKSLASH) out[j++] = BACKSLASH;
    out[j++] = b;
  }
  out[j++] = QUOTE;
  return out;
}

/** `name=value` with the value quoted when it must be. */
export function encodeOption(name: string, value: string | number | Uint8Array): Buffer {
  const v = typeof value === 'number' ? String(value) : value;
  return Buffer.concat([Buffer.from(name + '='), encodeWord(v, `the value of ${name}`)]);
}

const HEADER_NAME = /^[A-Za-z0-9_.-]{1,255}$/;

/** `h.<name>=<value>`. */
export function encodeHeader(name: string, value: string | Uint8Array): Buffer {
  if (!HEADER_NAME.test(name)) {
    throw new TypeError(`bad header name ${JSON.stringify(name)}: use 1-255 of A-Z a-z 0-9 - _ .`);
  }
  return encodeOption('h.' + name, value);
}

const SPACE_BUF = Buffer.from(' ');
const CRLF = Buffer.from('\r\n');

/** A part of a command line: raw bytes already encoded, or a plain keyword. */
export type Part = Buffer | string;

/**
 * One command as bytes: the parts joined by spaces, then CRLF; with a body,
 * the line ends in `{N}` and the N bytes and a CRLF follow.
 */
export function encodeCommand(parts: Part[], body?: Uint8Array): Buffer {
  if (parts.every((p) => typeof p === 'string')) {
    // Fast path (most commands): one string, one allocation.
    const line = (parts as string[]).join(' ');
    if (FORBIDDEN.test(line)) throw new TypeError('a command word cannot hold a NUL, CR or LF byte');
    const head = body === undefined ? line : `${line} {${body.length}}\r\n`;
    const headLen = Buffer.byteLength(head, 'utf8');
    const out = Buffer.allocUnsafe(headLen + (body?.length ?? 0) + 2);
    out.write(head, 0, 'utf8');
    let off = headLen;
    if (body !== undefined) {
      out.set(body, off);
      off += body.length;
    }
    out[off] = CR;
    out[off + 1] = LF;
    return out;
  }
  const bufs: Buffer[] = [];
  parts.forEach((p, i) => {
    if (i > 0) bufs.push(SPACE_BUF);
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    checkEncodable(b, 'a command word');
    bufs.push(b);
  });
  if (body !== undefined) {
    bufs.push(Buffer.from(` {${body.length}}\r\n`));
    bufs.push(toBytes(body));
  }
  bufs.push(CRLF);
  return Buffer.concat(bufs);
}

const FORBIDDEN = /[\0\r\n]/;
const NEEDS_QUOTES = /[\x00-\x20\x7f"\\=]/;
const LITERAL_LIKE = /^\{\d+\}$/;

/** {@link encodeWord} for a string, as a string (quoting works on ASCII bytes only, so it is the same). */
export function wordString(word: string, what = 'a word'): string {
  if (FORBIDDEN.test(word)) throw new TypeError(`${what} cannot hold a NUL, CR or LF byte`);
  if (word.length > 0 && !NEEDS_QUOTES.test(word) && !LITERAL_LIKE.test(word)) return word;
  return quoteString(word);
}

/** Always quotes a string (NUL, CR and LF are refused). */
export function quoteString(word: string, what = 'a word'): string {
  if (FORBIDDEN.test(word)) throw new TypeError(`${what} cannot hold a NUL, CR or LF byte`);
  return '"' + word.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/** {@link encodeOption} for a string or number value, as a string. */
export function optionString(name: string, value: string | number): string {
  return `${name}=${typeof value === 'number' ? String(value) : wordString(value, `the value of ${name}`)}`;
}

/** The fields of a `MSG` push (protocol.md, section 6). */
export interface MessageFields {
  /** The subscription's tag; `-` for a `GET` delivery, `*` for a `PEEK` line. */
  consumerTag: string;
  /** The delivery tag (a `PEEK` line: the message's position in its queue). */
  deliveryTag: number;
  exchange: string;
  /** The routing key, decoded as UTF-8. */
  routingKey: string;
  /** The routing key's exact bytes. */
  rawRoutingKey: Buffer;
  redelivered: boolean;
  /** Deliveries so far, this one included (`PEEK`: so far). */
  deliveries: number;
  id: string;
  /** Its message group (`PUB group=`), if any. */
  group: string | undefined;
  /** A stream delivery's offset. */
  offset: number | undefined;
  /** A partitioned stream delivery's partition index. */
  partition: number | undefined;
  /** Headers, values decoded as UTF-8. */
  headers: Record<string, string>;
  /** Headers with their values' exact bytes, in order. */
  rawHeaders: Array<[string, Buffer]>;
  body: Buffer;
}

function parseCount(w: Buffer | undefined, what: string): number {
  const s = w?.toString('latin1') ?? '';
  if (!/^\d+$/.test(s)) throw new ProtocolError(`MSG: ${what} is not a number: ${JSON.stringify(s)}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new ProtocolError(`MSG: ${what} too large: ${s}`);
  return n;
}

/**
 * Parses the words of a `MSG` line and its body. Words it does not know,
 * before the final `{N}`, are ignored (new fields may be added).
 */
export function parseMessage(words: Buffer[], body: Buffer | undefined): MessageFields {
  if (words.length < 5 || words[0]!.toString('latin1') !== 'MSG') {
    throw new ProtocolError('MSG: too few words');
  }
  if (body === undefined) throw new ProtocolError('MSG without a body');
  const msg: MessageFields = {
    consumerTag: words[1]!.toString('utf8'),
    deliveryTag: parseCount(words[2], 'delivery tag'),
    exchange: words[3]!.toString('utf8'),
    routingKey: words[4]!.toString('utf8'),
    rawRoutingKey: words[4]!,
    redelivered: false,
    deliveries: 0,
    id: '',
    group: undefined,
    offset: undefined,
    partition: undefined,
    headers: {},
    rawHeaders: [],
    body,
  };
  // The last word is the {N} mark.
  for (let i = 5; i < words.length - 1; i++) {
    const w = words[i]!;
    const eq = w.indexOf(0x3d);
    if (eq < 0) {
      if (w.toString('latin1') === 'redelivered') msg.redelivered = true;
      continue;
    }
    const name = w.subarray(0, eq).toString('utf8');
    const value = w.subarray(eq + 1);
    if (name.startsWith('h.')) {
      const h = name.slice(2);
      msg.headers[h] = value.toString('utf8');
      msg.rawHeaders.push([h, value]);
    } else if (name === 'deliveries') {
      msg.deliveries = parseCount(value, 'deliveries');
    } else if (name === 'id') {
      msg.id = value.toString('utf8');
    } else if (name === 'group') {
      msg.group = value.toString('utf8');
    } else if (name === 'offset') {
      msg.offset = parseCount(value, 'offset');
    } else if (name === 'partition') {
      msg.partition = parseCount(value, 'partition');
    }
  }
  return msg;
}

/** A reply line: `OK [words]` or `ERR <CODE> <text>`. */
export type Reply =
  | { ok: true; words: string[]; body: Buffer | undefined }
  | { ok: false; code: string; message: string };

/** Parses an `OK` or `ERR` line (its first word must be one of them). */
export function parseReply(line: Buffer, body: Buffer | undefined): Reply {
  const text = line.toString('utf8');
  if (text === 'OK' || text.startsWith('OK ') || text.startsWith('OK\t')) {
    // Fast path: no quotes, plain splitting.
    const words = text.includes('"') ? tokenizeText(line).slice(1) : text.split(/[ \t]+/).filter((w) => w !== '').slice(1);
    if (body !== undefined) words.pop(); // the {N} mark
    return { ok: true, words, body };
  }
  if (text === 'ERR' || text.startsWith('ERR ')) {
    const rest = text.slice(4);
    const sp = rest.indexOf(' ');
    const code = sp < 0 ? rest : rest.slice(0, sp);
    const message = sp < 0 ? '' : rest.slice(sp + 1);
    return { ok: false, code: code || 'INTERNAL', message };
  }
  throw new ProtocolError(`not a reply: ${JSON.stringify(text)}`);
}

/** The first word of a server line, to tell replies from pushes. */
export function firstWord(line: Buffer): string {
  let end = 0;
  while (end < line.length && !isBlank(line[end]!)) end++;
  return line.toString('latin1', 0, end);
}

/**
 * `key=value` words of a reply (`routed=1`) as a map; words without `=`
 * map to `true`.
 */
export function replyOptions(words: string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq < 0) out[w] = true;
    else out[w.slice(0, eq)] = w.slice(eq + 1);
  }
  return out;
}
