"""A real ``sluice serve`` for the tests: started on port 0, its address read from
the ``listening on <addr>`` line of its stdout (as .ci/run does), on a temporary
data directory, stopped (and killed if it will not stop) when the test is done.

The binary is ``$SLUICE_BIN``, else the repository's debug build
(``../../target/debug/sluice`` from this package).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)  # test this checkout's package, not an installed one


def sluice_bin() -> str:
    path = os.environ.get("SLUICE_BIN") or os.path.join(PKG_ROOT, "..", "..", "target", "debug", "sluice")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"no sluice binary at {path}: build it (cargo build) or set SLUICE_BIN")
    return path


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until it is truthy (returns its value); AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def make_cert(directory: str) -> "tuple[str, str]":
    """A self-signed certificate for localhost and 127.0.0.1 (as protocol.md's TLS section).
    Without the openssl CLI the test is skipped (and says so)."""
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("no openssl CLI to make a test certificate with")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


class Broker:
    """One ``sluice serve`` process (and its data directory)."""

    def __init__(self, tls: bool = False, extra_args: Optional[List[str]] = None) -> None:
        if tls and shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl CLI to make a test certificate with")
        self.dir = tempfile.mkdtemp(prefix="sluice-py-test-")
        self.data_dir = os.path.join(self.dir, "data")
        self.tls = tls
        self.extra_args = list(extra_args or [])
        self.cert = self.key = None
        if tls:
            self.cert, self.key = make_cert(self.dir)
        self.proc: Optional[subprocess.Popen] = None
        self.addr: Optional[str] = None
        self.tls_addr: Optional[str] = None
        self._starts = 0

    def start(self) -> "Broker":
        """Start; the first time on free ports, later on the same addresses (a restart)."""
        assert self.proc is None, "already running"
        self._starts += 1
        out_path = os.path.join(self.dir, f"stdout-{self._starts}.txt")
        err_path = os.path.join(self.dir, f"stderr-{self._starts}.txt")
        args = [sluice_bin(), "serve", "--addr", self.addr or "127.0.0.1:0", "--data-dir", self.data_dir,
                "--shutdown-timeout", "5000", *self.extra_args]
        if self.tls:
            args += ["--tls-cert", self.cert, "--tls-key", self.key, "--tls-addr", self.tls_addr or "127.0.0.1:0"]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            with open(out_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            addr = next((ln[len("listening on "):] for ln in lines if ln.startswith("listening on ")), None)
            tls_addr = next((ln[len("listening tls on "):] for ln in lines
                             if ln.startswith("listening tls on ")), None)
            if addr and (tls_addr or not self.tls):
                self.addr, self.tls_addr = addr.strip(), tls_addr.strip() if tls_addr else None
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(err_path, "rb") as f:
                    err_text = f.read().decode("utf-8", "replace")[-3000:]
                self.kill()
                raise RuntimeError(f"sluice serve did not start ({args}):\n{err_text}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (a clean stop) and wait; SIGKILL if it takes over 15 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def module_broker(**kw) -> Broker:
    """A broker for a test module, stopped and removed by a module cleanup, which
    unittest runs even when setUpModule fails after this."""
    broker = Broker(**kw)
    unittest.addModuleCleanup(broker.cleanup)
    return broker.start()


_names = 0


def unique(prefix: str = "q") -> str:
    """A queue or exchange name no other test uses."""
    global _names
    _names += 1
    return f"{prefix}-{os.getpid()}-{_names}"
