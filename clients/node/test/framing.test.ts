// The pure wire format, without a server: framing, tokenizing, quoting, MSG and reply parsing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  encodeCommand,
  encodeHeader,
  encodeOption,
  encodeWord,
  FrameReader,
  literalLength,
  parseMessage,
  parseReply,
  ProtocolError,
  tokenize,
  tokenizeText,
  type Frame,
} from '../dist/framing.js';

const b = (s: string) => Buffer.from(s, 'latin1');

function frames(input: Buffer, chunk: number): Frame[] {
  const r = new FrameReader();
  const out: Frame[] = [];
  for (let i = 0; i < input.length; i += chunk) {
    r.push(input.subarray(i, i + chunk));
    for (let f = r.next(); f; f = r.next()) out.push(f);
  }
  return out;
}

describe('literalLength (protocol.md, the literal table)', () => {
  const cases: Array<[string, number | undefined]> = [
    ['PUB "" jobs {5}', 5],
    ['PUB "" jobs {5}   ', 5],
    ['PUB "" jobs "{5}"', undefined],
    ['PUB "" jobs x{5}', undefined],
    ['PUB "" jobs {000000000000000000001}', 1],
    ['{0}', 0],
    ['OK {486}', 486],
    ['OK stats\t{12}', 12],
    ['PUB "" jobs {}', undefined],
    ['PUB "" jobs {5', undefined],
    ['PUB "" jobs 5}', undefined],
    ['PUB "" jobs {5}x', undefined],
    ['PUB "" jobs {-5}', undefined],
    ['', undefined],
  ];
  for (const [line, want] of cases) {
    test(JSON.stringify(line), () => assert.equal(literalLength(b(line)), want));
  }
  test('a count past 2^53 is a protocol error, not a wrong number', () => {
    assert.throws(() => literalLength(b('OK {99999999999999999999}')), ProtocolError);
  });
});

describe('FrameReader', () => {
  const body = Buffer.concat([b('\r\n\r\n\r\n'), Buffer.from([0, 0xff, 0, 0x0d]), b('MSG x {3}\r\n')]);
  const stream = Buffer.concat([
    b('HELLO sluice 0.1.0 proto=1\r\n'),
    b('OK 1a-1 routed=1\r\n'),
    b(`MSG w1 1 "" jobs deliveries=1 id=1a-1 {${body.length}}\r\n`),
    body,
    b('\r\n'),
    b('\r\n'), // a blank line carries nothing
    b('MSG w1 2 "" jobs deliveries=1 id=1a-2 {0}\r\n\r\n'),
    b('NOTICE heartbeat\n'), // a bare LF ends a line too
    b('OK {3}\nabc\n'), // and a literal
    b('OK pong\r\n'),
  ]);

  const check = (got: Frame[]) => {
    assert.deepEqual(
      got.map((f) => f.line.toString('latin1')),
      [
        'HELLO sluice 0.1.0 proto=1',
        'OK 1a-1 routed=1',
        `MSG w1 1 "" jobs deliveries=1 id=1a-1 {${body.length}}`,
        'MSG w1 2 "" jobs deliveries=1 id=1a-2 {0}',
        'NOTICE heartbeat',
        'OK {3}',
        'OK pong',
      ],
    );
    assert.deepEqual(got[2]!.body, body, 'a body with CRLFs, NULs and a fake MSG line is read by its count');
    assert.deepEqual(got[3]!.body, Buffer.alloc(0));
    assert.deepEqual(got[5]!.body, b('abc'));
    assert.equal(got[0]!.body, undefined);
  };

  test('one chunk', () => check(frames(stream, stream.length)));
  test('byte by byte', () => check(frames(stream, 1)));
  for (const n of [2, 3, 5, 7, 13]) test(`chunks of ${n}`, () => check(frames(stream, n)));

  test('a large literal in many chunks', () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    const input = Buffer.concat([b(`OK {${big.length}}\r\n`), big, b('\r\nOK pong\r\n')]);
    const got = frames(input, 65536);
    assert.equal(got.length, 2);
    assert.ok(got[0]!.body!.equals(big));
    assert.equal(got[1]!.line.toString(), 'OK pong');
  });

  test('no end of line after a literal is a protocol error', () => {
    const r = new FrameReader();
    r.push(b('OK {3}\r\nabcX\r\n'));
    assert.throws(() => r.next(), ProtocolError);
  });

  test('a line over the limit is a protocol error', () => {
    const r = new FrameReader({ maxLine: 10 });
    r.push(b('OK 0123456789abcdef'));
    assert.throws(() => r.next(), ProtocolError);
  });

  test('an incomplete frame waits for more bytes', () => {
    const r = new FrameReader();
    r.push(b('OK {5}\r\nab'));
    assert.equal(r.next(), undefined);
    r.push(b('cde\r'));
    assert.equal(r.next(), undefined, 'CR alone: the LF may still come');
    r.push(b('\n'));
    assert.deepEqual(r.next()!.body, b('abcde'));
  });
});

describe('tokenize', () => {
  test('blanks, quotes and escapes', () => {
    assert.deepEqual(tokenizeText(b('PuB\t""  jobs\t"two  words"')), ['PuB', '', 'jobs', 'two  words']);
    assert.deepEqual(tokenizeText(b('x "a \\"quoted\\" word" "back\\\\slash"')), ['x', 'a "quoted" word', 'back\\slash']);
  });

  test('quoted option values', () => {
    assert.deepEqual(tokenizeText(b('MSG a 1 "" k h.note="a b" h.e="" h.q="x\\"y" {1}')), [
      'MSG', 'a', '1', '', 'k', 'h.note=a b', 'h.e=', 'h.q=x"y', '{1}',
    ]);
  });

  test('bytes that are not UTF-8 are kept', () => {
    const line = Buffer.concat([b('MSG a 1 "" caf'), Buffer.from([0xe9]), b(' {0}')]);
    assert.deepEqual(tokenize(line)[4], Buffer.concat([b('caf'), Buffer.from([0xe9])]));
  });

  test('malformed words are protocol errors', () => {
    assert.throws(() => tokenize(b('a "open')), ProtocolError);
    assert.throws(() => tokenize(b('a "x\\t"')), ProtocolError);
    assert.throws(() => tokenize(b('a "x"y')), ProtocolError);
  });
});

describe('encoding words and commands', () => {
  const tricky: Buffer[] = [
    b(''),
    b('plain'),
    b('two words'),
    b('tab\there'),
    b('"quoted"'),
    b('back\\slash'),
    b('{5}'),
    b('{000}'),
    b('a=b'),
    b('h.x=y'),
    b('*'),
    b('#'),
    Buffer.from([0x80, 0xff, 0xe9, 0x7f, 0x01]),
    b('ends with a backslash\\'),
  ];
  for (const w of tricky) {
    test(`round trip ${JSON.stringify(w.toString('latin1'))}`, () => {
      const enc = encodeWord(w);
      const words = tokenize(Buffer.concat([b('X '), enc, b(' Y')]));
      assert.equal(words.length, 3);
      assert.deepEqual(words[1], w);
      assert.equal(literalLength(enc), undefined, 'never a literal mark');
    });
  }

  test('words that need no quotes stay bare', () => {
    assert.equal(encodeWord('jobs').toString(), 'jobs');
    assert.equal(encodeWord('orders.eu-1:x/y').toString(), 'orders.eu-1:x/y');
    assert.equal(encodeWord('').toString(), '""');
  });

  test('NUL, CR and LF cannot be sent in a word', () => {
    for (const bad of ['a\0b', 'a\rb', 'a\nb']) {
      assert.throws(() => encodeWord(bad), TypeError);
      assert.throws(() => encodeCommand(['PING', bad]), TypeError);
    }
  });

  test('options and headers quote their values', () => {
    assert.equal(encodeOption('name', 'my app').toString(), 'name="my app"');
    assert.equal(encodeOption('dead-letter', '').toString(), 'dead-letter=""');
    assert.equal(encodeHeader('note', 'a=b').toString(), 'h.note="a=b"');
    assert.throws(() => encodeHeader('bad name', 'x'), TypeError);
  });

  test('a command with a body is a literal', () => {
    const body = Buffer.from([0x00, 0xff, 0x0d, 0x0a]);
    assert.deepEqual(
      encodeCommand(['PUB', encodeWord(''), encodeWord('jobs')], body),
      Buffer.concat([b('PUB "" jobs {4}\r\n'), body, b('\r\n')]),
    );
    assert.deepEqual(encodeCommand(['PING']), b('PING\r\n'));
  });
});

describe('parseMessage', () => {
  test('the fields of a delivery', () => {
    const line = b(
      'MSG w1 2 orders invoice.created redelivered deliveries=2 id=inv-42 group=cust-a ' +
        'h.content-type=application/json h.note="a b" future=thing {26}',
    );
    const m = parseMessage(tokenize(line), b('{"invoice":42,"total":9.5}'));
    assert.equal(m.consumerTag, 'w1');
    assert.equal(m.deliveryTag, 2);
    assert.equal(m.exchange, 'orders');
    assert.equal(m.routingKey, 'invoice.created');
    assert.equal(m.redelivered, true);
    assert.equal(m.deliveries, 2);
    assert.equal(m.id, 'inv-42');
    assert.equal(m.group, 'cust-a');
    assert.deepEqual(m.headers, { 'content-type': 'application/json', note: 'a b' });
    assert.equal(m.offset, undefined);
    assert.equal(m.body.toString(), '{"invoice":42,"total":9.5}');
  });

  test('GET, stream and partition fields', () => {
    const m = parseMessage(tokenize(b('MSG - 7 payments user-1 deliveries=1 id=x offset=12 partition=1 {0}')), Buffer.alloc(0));
    assert.equal(m.consumerTag, '-');
    assert.equal(m.redelivered, false);
    assert.equal(m.offset, 12);
    assert.equal(m.partition, 1);
  });

  test('a quoted empty exchange and a key that looks like a literal', () => {
    const m = parseMessage(tokenize(b('MSG t 1 "" "{5}" deliveries=1 id=i {1}')), b('x'));
    assert.equal(m.exchange, '');
    assert.equal(m.routingKey, '{5}');
  });

  test('garbage is a protocol error', () => {
    assert.throws(() => parseMessage(tokenize(b('MSG t x "" k {0}')), Buffer.alloc(0)), ProtocolError);
    assert.throws(() => parseMessage(tokenize(b('MSG t 1')), Buffer.alloc(0)), ProtocolError);
  });
});

describe('parseReply', () => {
  test('OK with words, with a literal, and ERR', () => {
    assert.deepEqual(parseReply(b('OK 1a-2 routed=1'), undefined), { ok: true, words: ['1a-2', 'routed=1'], body: undefined });
    assert.deepEqual(parseReply(b('OK stats {3}'), b('a 1')), { ok: true, words: ['stats'], body: b('a 1') });
    assert.deepEqual(parseReply(b('OK'), undefined), { ok: true, words: [], body: undefined });
    assert.deepEqual(parseReply(b('ERR NO_ROUTE exchange "x" routed the message to no queue'), undefined), {
      ok: false,
      code: 'NO_ROUTE',
      message: 'exchange "x" routed the message to no queue',
    });
    assert.throws(() => parseReply(b('MSG x'), undefined), ProtocolError);
  });
});
