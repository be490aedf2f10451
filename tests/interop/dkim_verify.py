#!/usr/bin/env python3
"""Verify a message's DKIM-Signature with dkimpy (PyPI `dkimpy`), offline.

    python3 dkim_verify.py MESSAGE.eml PUBLIC_KEY_TXT_FILE

PUBLIC_KEY_TXT_FILE holds the DNS TXT value (`v=DKIM1; k=rsa; p=<base64>`) that
`<s>._domainkey.<d>` would publish, where s= and d= come from the message's
DKIM-Signature; no DNS is queried. Prints `OK` and exits 0 when every
DKIM-Signature verifies; otherwise prints the reason and exits 1 (2 on usage
errors). Test keys only: see the note at the top of smtp_peer.py.
"""

import logging
import re
import sys

import dkim


def signature_tags(message):
    """The s= and d= tags of each DKIM-Signature header (None when absent)."""
    sigs = []
    for name, value in dkim.rfc822_parse(message)[0]:
        if name.lower() != b"dkim-signature":
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
        except dkim.util.InvalidTagValueList as e:
            sigs.append({"error": str(e)})
            continue
        sigs.append(tags)
    return sigs


def main(argv):
    if len(argv) != 3:
        print("usage: dkim_verify.py MESSAGE.eml PUBLIC_KEY_TXT_FILE")
        return 2
    with open(argv[1], "rb") as f:
        message = f.read()
    with open(argv[2], "rb") as f:
        txt = f.read().strip()
    if not txt.startswith(b"v=DKIM1"):
        print(f"{argv[2]} is not a DKIM TXT record (v=DKIM1; k=rsa; p=...)")
        return 2

    sigs = signature_tags(message)
    if not sigs:
        print("no DKIM-Signature header")
        return 1
    names = set()
    for tags in sigs:
        if "error" in tags:
            print(f"malformed DKIM-Signature: {tags['error']}")
            return 1
        s, d = tags.get(b"s"), tags.get(b"d")
        if not s or not d:
            print(f"DKIM-Signature without s= or d=: {tags}")
            return 1
        names.add(re.sub(rb"\s+", b"", s) + b"._domainkey." + re.sub(rb"\s+", b"", d) + b".")

    asked = []

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        asked.append(name)
        n = name if name.endswith(b".") else name + b"."
        return txt if n.lower() in {x.lower() for x in names} else None

    # dkimpy logs (rather than raises) why a key was refused: keep those lines.
    logged = []
    logger = logging.getLogger("dkim_verify")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger.addHandler(handler)

    for i in range(len(sigs)):
        d = dkim.DKIM(message, logger=logger)
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            print(f"DKIM-Signature {i + 1}: {e}")
            return 1
        if not ok:
            why = "; ".join(logged) or "the header signature (b=) does not verify"
            s, d = sigs[i][b"s"].decode(), sigs[i][b"d"].decode()
            print(f"DKIM-Signature {i + 1} (s={s} d={d}): {why}; key asked for: {asked}")
            return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
