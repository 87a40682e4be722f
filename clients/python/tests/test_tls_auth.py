"""TLS (a self-signed certificate made with the openssl CLI) and AUTH."""

from __future__ import annotations

import os
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _broker import Broker, module_broker, unique, wait_until  # noqa: E402

import sluice  # noqa: E402
from sluice import Client  # noqa: E402

broker: Broker


def setUpModule() -> None:
    global broker
    broker = module_broker(tls=True)
    # The broker has no users yet (it is open): the first one must be an admin.
    with Client(broker.addr, timeout=30) as c:
        c.send_command('USER ADD admin "s3cret pass" admin')
        # From now on this connection too needs a login.
        try:
            c.send_command("USER LIST")
        except sluice.NoAuthError:
            pass
        else:
            raise AssertionError("USER LIST without AUTH on a broker with users was not refused")
        c.send_command('AUTH admin "s3cret pass"')
        c.send_command("USER ADD app apppw configure=^app\\. write=^app\\. read=^app\\.")



class TLSAuthTest(unittest.TestCase):
    def test_tls_with_ca_file_and_auth(self) -> None:
        with Client(broker.tls_addr, tls=True, ca_file=broker.cert, user="admin", password="s3cret pass",
                    timeout=30) as c:
            q = unique("app.q")
            c.declare_queue(q)
            body = bytes(range(256)) * 1000 + b"\r\n\r\n\r\n\x00"
            self.assertEqual(c.publish("", q, body).routed, 1)
            sub = c.subscribe(q)
            m = sub.next(timeout=10)
            self.assertEqual(m.body, body)
            m.ack()
            _, table = c.send_command("LIST CONNECTIONS")
            rows = [r.split() for r in table.decode().splitlines()]
            tls_col, user_col = rows[0].index("tls"), rows[0].index("user")
            self.assertIn(["admin", "true"], [[r[user_col], r[tls_col]] for r in rows[1:]])

    def test_tls_reconnect_logs_in_again(self) -> None:
        with Client(broker.tls_addr, tls=True, ca_file=broker.cert, user="admin", password="s3cret pass",
                    timeout=30, reconnect_delay=0.05) as c:
            q = unique("app.q")
            c.declare_queue(q)
            sub = c.subscribe(q)
            c._drop_connection()
            # A new connection: TLS, AUTH, SUB again.
            wait_until(lambda: c.reconnects == 1 and c.connected, what="the reconnect")
            self.assertEqual(c.publish("", q, b"x").routed, 1)
            self.assertEqual(sub.next(timeout=10).body, b"x")
            self.assertEqual(c.reconnects, 1)

    def test_tls_with_an_ssl_context(self) -> None:
        ctx = ssl.create_default_context(cafile=broker.cert)
        with Client(broker.tls_addr, tls=ctx, user="admin", password="s3cret pass", timeout=30) as c:
            c.ping()

    def test_tls_untrusted_certificate_is_refused(self) -> None:
        with self.assertRaises(sluice.SluiceConnectionError) as cm:
            Client(broker.tls_addr, tls=True, user="admin", password="s3cret pass", timeout=30)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(cm.exception))

    def test_wrong_password_is_a_typed_error(self) -> None:
        with self.assertRaises(sluice.NoAuthError) as cm:
            Client(broker.tls_addr, tls=True, ca_file=broker.cert, user="admin", password="wrong", timeout=30)
        self.assertEqual(cm.exception.code, "NOAUTH")
        self.assertIsInstance(cm.exception, sluice.SluiceError)

    def test_commands_need_a_login(self) -> None:
        with Client(broker.addr, timeout=30) as c:
            c.ping()  # allowed before AUTH
            with self.assertRaises(sluice.NoAuthError):
                c.declare_queue(unique())

    def test_permissions_are_typed_errors(self) -> None:
        with Client(broker.addr, user="app", password="apppw", timeout=30) as c:
            q = unique("app.jobs")
            c.declare_queue(q)
            with self.assertRaises(sluice.ForbiddenError) as cm:
                c.publish("", q, b"hi")  # no write permission on the default exchange
            self.assertEqual(cm.exception.code, "FORBIDDEN")
            with self.assertRaises(sluice.ForbiddenError):
                c.declare_queue(unique("other"))
            with self.assertRaises(sluice.ForbiddenError):
                c.send_command("USER LIST")


if __name__ == "__main__":
    unittest.main()
