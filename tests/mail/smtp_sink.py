#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for Backbone's mail tests and benchmark.

Listens on 127.0.0.1:PORT and prints "READY <port>" once it accepts connections. Each
accepted message is parsed with Python's own `email` package (an implementation independent
of the one that built it) and written to OUT as <n>.json (envelope, decoded headers, the
text and HTML parts, the raw message), via a temporary file and a rename, *before* the
final 250 reply is sent. Without --out, messages are only counted (benchmark mode).

TLS: --tls-cert CERT --tls-key KEY with --tls-mode starttls (STARTTLS offered and required
before MAIL) or --tls-mode implicit (TLS from the first byte, like port 465).

Failure modes:
  --fail-first N --fail-reply "451 4.3.0 Try again later"
        answer the first N DATA transactions (of this process) with that reply;
  --reject-reply "550 5.1.1 No such user"
        answer every DATA transaction with that reply.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, fail_first, fail_reply, reject_reply):
        self.out = out
        self.fail_first = fail_first
        self.fail_reply = fail_reply
        self.reject_reply = reject_reply
        self.transactions = 0
        self.accepted = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.transactions += 1
            n = self.transactions
        if n <= self.fail_first:
            return self.fail_reply
        if self.reject_reply:
            return self.reject_reply
        with self.lock:
            self.accepted += 1
            seq = self.accepted
        if self.out:
            raw = envelope.original_content or envelope.content
            message = email.message_from_bytes(raw, policy=email.policy.default)
            text = message.get_body(preferencelist=("plain",))
            html = message.get_body(preferencelist=("html",))
            record = {
                "mailFrom": envelope.mail_from,
                "rcptTos": list(envelope.rcpt_tos),
                "headers": {k: str(v) for k, v in message.items()},
                "contentType": message.get_content_type(),
                "parts": [part.get_content_type() for part in message.walk()],
                "text": text.get_content() if text is not None else None,
                "html": html.get_content() if html is not None else None,
                "raw": raw.decode("utf-8", "replace"),
            }
            name = "%d-%06d" % (os.getpid(), seq)
            tmp = os.path.join(self.out, name + ".tmp")
            with open(tmp, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.out, name + ".json"))
        return "250 2.0.0 Ok: queued as %d" % seq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-reply", default="451 4.3.0 Try again later")
    parser.add_argument("--reject-reply")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-mode", choices=["starttls", "implicit"])
    args = parser.parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    sink = Sink(args.out, args.fail_first, args.fail_reply, args.reject_reply)
    tls = {}
    if args.tls_mode:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_mode == "starttls":
            tls = {"tls_context": context, "require_starttls": True}
        else:
            tls = {"ssl_context": context}
    controller = Controller(sink, hostname="127.0.0.1", port=args.port, decode_data=False, **tls)
    controller.start()
    print("READY %d" % args.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    controller.stop()
    print("ACCEPTED %d" % sink.accepted, flush=True)


if __name__ == "__main__":
    sys.exit(main())
