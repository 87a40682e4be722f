#!/usr/bin/env python3
"""A sluice client in plain Python 3, using only the standard library.

It shows everything a client in any language needs: read the greeting,
send command lines (and {N} literals), read replies in order, tell pushes
(MSG, NOTICE) from replies, and read a literal by counting bytes, never by
looking for a delimiter inside it.

What it does: declares a queue with a server-generated name, publishes a
binary body (with NUL, 0xFF and CR LF in it) as a literal and a text body
inline, subscribes, receives both MSG pushes, acks them and says goodbye.

Run it against a broker:

    cargo run --release -- serve          # terminal 1
    python3 examples/python_client.py     # terminal 2

The address comes from SLUICE_ADDR (default 127.0.0.1:5680). Exit code 0
on success, 1 on any unexpected reply.
"""

import os
import re
import socket
import sys

# A line announces a literal when its last word is {N}: purely lexical.
LIT_MARK = re.compile(rb"(?:^|[ \t])\{(\d{1,20})\}[ \t]*$")


class Unexpected(Exception):
    """The server said something this script did not expect."""


def words(line):
    """Split a server line into words, undoing "quotes" and \\" \\\\ escapes."""
    out, i, n = [], 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] == '"':
            i += 1
            w = []
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                w.append(line[i])
                i += 1
            i += 1
            out.append("".join(w))
        else:
            j = i
            while j < n and line[j] not in " \t":
                j += 1
            out.append(line[i:j])
            i = j
    return out


def quote(word):
    """Quote a word for a command line (always safe, required for "" and spaces)."""
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Conn:
    """One connection: a byte buffer and frame reading."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""
        self.pushes = []  # MSG pushes read while waiting for a reply

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Unexpected("the server closed the connection")
        self.buf += data

    def _line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line[:-1] if line.endswith(b"\r") else line

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def frame(self):
        """One server frame: (line as text, literal bytes or None)."""
        line = self._line()
        m = LIT_MARK.search(line)
        if not m:
            return line.decode(errors="replace"), None
        body = self._exactly(int(m.group(1)))
        if self._line() != b"":  # the literal is followed by CRLF
            raise Unexpected("no end of line after a literal")
        return line.decode(errors="replace"), body

    def send(self, line, body=None):
        data = line.encode()
        if body is not None:
            data += b" {%d}\r\n" % len(body) + body
        self.sock.sendall(data + b"\r\n")

    def reply(self):
        """Read up to the next OK/ERR; MSG pushes on the way are kept."""
        while True:
            line, body = self.frame()
            first = line.split(" ", 1)[0]
            if first == "MSG":
                self.pushes.append(parse_msg(line, body))
            elif first == "NOTICE":
                print("notice:", line)  # unknown kinds must be ignored
            elif first in ("OK", "ERR"):
                return line, body
            else:
                raise Unexpected("unexpected line %r" % line)

    def request(self, line, body=None, expect="OK"):
        """Send one command; its reply must start with `expect`."""
        print("C: %s%s" % (line, " {%d}" % len(body) if body is not None else ""))
        self.send(line, body)
        reply, data = self.reply()
        print("S: %s" % reply)
        if not (reply == expect or reply.startswith(expect + " ")):
            raise Unexpected("%r answered %r" % (line, reply))
        return words(reply)[1:], data


def parse_msg(line, body):
    """MSG <ctag> <dtag> <exchange> <key> [redelivered] deliveries=<n> id=<id> [h.*] {N}"""
    w = words(line)
    msg = {
        "ctag": w[1],
        "dtag": int(w[2]),
        "exchange": w[3],
        "key": w[4],
        "redelivered": False,
        "headers": {},
        "body": body,
    }
    for word in w[5:-1]:
        if word == "redelivered":
            msg["redelivered"] = True
        elif word.startswith("h."):
            name, value = word[2:].split("=", 1)
            msg["headers"][name] = value
        elif "=" in word:
            name, value = word.split("=", 1)
            msg[name] = value
    return msg


def main():
    addr = os.environ.get("SLUICE_ADDR", "127.0.0.1:5680")
    conn = Conn(addr)
    greeting, _ = conn.frame()
    print("S: " + greeting)
    if not greeting.startswith("HELLO sluice ") or "proto=1" not in greeting.split():
        raise Unexpected("unexpected greeting %r" % greeting)

    conn.request("HELLO name=python-example proto=1")
    # "" asks the server for a name; exclusive: it goes away with this connection.
    (queue, *_), _ = conn.request('DECLARE QUEUE "" exclusive')

    binary = b"\x00\xffbinary\r\nsafe\x00"
    (id1, routed), _ = conn.request(
        "PUB %s %s h.content-type=application/octet-stream" % (quote(""), quote(queue)),
        body=binary,
    )
    text = "hello from python"
    (id2, _), _ = conn.request("PUB %s %s %s" % (quote(""), quote(queue), quote(text)))
    if routed != "routed=1":
        raise Unexpected("expected routed=1, got %s" % routed)

    conn.request("SUB %s prefetch=10 tag=py" % quote(queue), expect="OK py")
    # SUB's OK always comes before the subscription's first MSG; the pushes
    # may already have been read (request() keeps them) or still be on the
    # way, so read frames until both messages are here.
    while len(conn.pushes) < 2:
        line, body = conn.frame()
        if line.startswith("MSG "):
            conn.pushes.append(parse_msg(line, body))
        elif not line.startswith("NOTICE "):
            raise Unexpected("unexpected line %r" % line)

    got = conn.pushes
    conn.pushes = []
    for m in got:
        print("got MSG %d id=%s %r headers=%s" % (m["dtag"], m["id"], m["body"], m["headers"]))
    if [m["body"] for m in got] != [binary, text.encode()]:
        raise Unexpected("bodies differ from what was published")
    if [m["id"] for m in got] != [id1, id2]:
        raise Unexpected("ids differ from the PUB replies")
    if got[0]["headers"] != {"content-type": "application/octet-stream"}:
        raise Unexpected("headers lost: %r" % got[0]["headers"])

    for m in got:
        conn.request("ACK %d" % m["dtag"])
    conn.request("ACK %d" % got[-1]["dtag"], expect="ERR UNKNOWN_TAG")
    conn.request("UNSUB py")
    conn.request("QUIT", expect="OK bye")
    print("done: published 2 messages, received and acked both")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Unexpected, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(1)
