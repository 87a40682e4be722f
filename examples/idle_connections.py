#!/usr/bin/env python3
"""Idle cost of many connections: 1,000 queues with one subscriber each, then N
idle connections; prints the broker's RSS at each step and its CPU over 10 s.

    ./target/release/sluice serve --max-connections 20000 --data-dir $(mktemp -d) & pid=$!
    python3 examples/idle_connections.py 127.0.0.1:5680 10000 $pid

Linux only (reads /proc/<pid>). Standard library only."""
import socket, sys, time, os
addr = sys.argv[1]; n = int(sys.argv[2]); pid = sys.argv[3]
host, port = addr.rsplit(':', 1)
def rss():
    for l in open(f'/proc/{pid}/status'):
        if l.startswith('VmRSS'): return l.split()[1] + ' kB'
def cpu():
    f = open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
    return int(f[11]) + int(f[12])
print('start', rss())
# 1000 queues, one subscriber each
subs = []
c = socket.create_connection((host, int(port))); c.recv(100)
for i in range(1000):
    c.sendall(f'DECLARE QUEUE q{i}\r\n'.encode())
time.sleep(0.5); c.recv(1 << 20)
for i in range(1000):
    s = socket.create_connection((host, int(port))); s.recv(100)
    s.sendall(f'SUB q{i}\r\n'.encode()); subs.append(s)
print('1000 subscribers', rss())
idle = []
for i in range(n):
    s = socket.create_connection((host, int(port))); idle.append(s)
time.sleep(2)
print(f'{n} idle connections more', rss())
t0 = cpu(); time.sleep(10); t1 = cpu()
print('idle CPU over 10 s:', (t1 - t0) * 10, 'ms')
