#!/usr/bin/env python3
"""A third-party SMTP server for the e-mail interop test: aiosmtpd (PyPI).

Used by gateway/tests/smtp_interop.rs; dependencies in requirements.txt next to
this file (`python3 -m pip install -r tests/interop/requirements.txt`, which
.ci/run does).

    python3 smtp_peer.py OUT_DIR

- Listens with plain SMTP (no TLS, no AUTH) on 127.0.0.1, on a port the OS picks.
- Prints `{"port": N}` as its first stdout line, then one JSON line per message
  received: `{"file": PATH, "mail_from": ..., "rcpt_tos": [...], "size": N}`.
- Saves each message's raw bytes as received (CRLF line ends, only the SMTP
  dot-stuffing undone: exactly what a DKIM verifier must see) as
  OUT_DIR/1.eml, OUT_DIR/2.eml, ... (written to a temporary name and renamed,
  so a reader never sees half a file).
- Exits when its stdin closes (so it never outlives the test that started it).

TEST KEYS: dkim-test.key (an RSA-2048 private key, PKCS#1 PEM) and dkim-test.txt
(its public half as a DNS TXT value, `v=DKIM1; k=rsa; p=...`) in this folder are
for tests only. They are public in this repository: never use them to sign real
mail. dkim_verify.py checks a saved message's DKIM-Signature against
dkim-test.txt.
"""

import asyncio
import json
import os
import sys
import threading

from aiosmtpd.smtp import SMTP


class SaveHandler:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        self.count += 1
        path = os.path.join(self.out_dir, f"{self.count}.eml")
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
        emit(
            {
                "file": path,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "size": len(raw),
            }
        )
        return "250 OK message accepted"


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    loop = asyncio.get_running_loop()
    handler = SaveHandler(out_dir)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="peer.localhost", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=0,
    )
    port = server.sockets[0].getsockname()[1]
    emit({"port": port})

    stdin_closed = asyncio.Event()

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await stdin_closed.wait()
    # Not wait_closed(): on newer Pythons it waits for pooled client
    # connections to hang up, and the client may keep them open.
    server.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smtp_peer.py OUT_DIR")
    asyncio.run(main(sys.argv[1]))
