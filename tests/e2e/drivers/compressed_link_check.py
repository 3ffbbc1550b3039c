#!/usr/bin/env python3
"""Reads one result with psycopg 3 and prints the MD5 of it as COPY text, as one JSON line.

    compressed_link_check.py --host 127.0.0.1 --port 5439 --user u --dbname dev \
        [--password p] [--sslmode disable|verify-full [--sslrootcert CA.pem]] --mode copy|select --query SQL

prints {"md5": "<hex>", "bytes": N, "rows": N, "seconds": S} and exits 0, or prints the error
on stderr and exits 1. tests/e2e/drivers/CompressedLinkCheck.java does the same with pgjdbc.

- copy: QUERY is a `copy (...) to stdout`; the MD5 and the byte count are of exactly the bytes
  psycopg's `Cursor.copy()` received, and rows is the count in the server's COPY tag.
- select: QUERY is a plain SELECT, read with `Cursor.stream()` (libpq's single-row mode), so
  the result streams as the server sends it instead of being held whole. Every type is loaded as the
  server's own text (psycopg's TextLoader on every OID), and each row is hashed as COPY text
  would carry it: columns joined by a tab, a newline after each row, NULL as \\N. Values with
  tabs, newlines or backslashes, which COPY escapes, are not escaped here: the queries avoid
  them.

seconds is the wall time from before the connection to after the last byte; the program hashes
in 1 MiB chunks and does no per-row work beyond a row's text, so it can time a client too. The
compressed_link suite (tests/e2e/compressed_link.rs) runs it with the interpreter of the
virtualenv scripts/redshift-connector-venv makes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time

try:
    import psycopg
    from psycopg import postgres
    from psycopg.types.string import TextLoader
except ImportError as error:
    sys.exit(
        f"psycopg is not installed ({error}): run scripts/test, which installs it with "
        "scripts/redshift-connector-venv, or use a Python that has psycopg[binary]"
    )

BATCH_ROWS = 10_000
CHUNK = 1 << 20


def connect(args: argparse.Namespace) -> psycopg.Connection:
    params = {
        "host": args.host,
        "port": args.port,
        "user": args.user,
        "dbname": args.dbname,
        "sslmode": args.sslmode,
        "connect_timeout": 30,
    }
    if args.password is not None:
        params["password"] = args.password
    if args.sslrootcert is not None:
        params["sslrootcert"] = args.sslrootcert
    return psycopg.connect(**params)


def copy_out(conn: psycopg.Connection, query: str, md5) -> tuple[int, int]:
    received = 0
    pending = bytearray()
    with conn.cursor() as cursor:
        with cursor.copy(query) as copy:
            for data in copy:
                pending += data
                if len(pending) >= CHUNK:
                    md5.update(pending)
                    received += len(pending)
                    pending.clear()
        md5.update(pending)
        received += len(pending)
        return received, cursor.rowcount


def as_copy_text(rows: list) -> str:
    lines = []
    for row in rows:
        lines.append("\t".join("\\N" if value is None else value for value in row))
    return "\n".join(lines)


def select(conn: psycopg.Connection, query: str, md5) -> tuple[int, int]:
    # The server's text for every type, as COPY would give it: no Python objects in between.
    for info in postgres.types:
        for oid in (info.oid, info.array_oid):
            if oid:
                conn.adapters.register_loader(oid, TextLoader)
    received = rows = 0
    # cursor.stream: libpq's single-row mode, so the rows come as the server sends them, with
    # no batch round trips (a named cursor's FETCH would cost one per batch) and no whole
    # result held.
    with conn.cursor() as cursor:
        stream = cursor.stream(query)
        while batch := list(itertools.islice(stream, BATCH_ROWS)):
            try:
                text = "\n".join(map("\t".join, batch))
            except TypeError:
                text = as_copy_text(batch)
            data = (text + "\n").encode()
            md5.update(data)
            received += len(data)
            rows += len(batch)
    return received, rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--password")
    parser.add_argument(
        "--sslmode",
        default="disable",
        choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
    )
    parser.add_argument("--sslrootcert", help="a PEM CA file, for verify-full")
    parser.add_argument("--mode", required=True, choices=["copy", "select"])
    parser.add_argument("--query", required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    md5 = hashlib.md5()
    try:
        with connect(args) as conn:
            if args.mode == "copy":
                received, rows = copy_out(conn, args.query, md5)
            else:
                received, rows = select(conn, args.query, md5)
            seconds = time.perf_counter() - started
    except psycopg.Error as error:
        print(f"compressed_link_check.py: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    out = {"md5": md5.hexdigest(), "bytes": received, "rows": rows, "seconds": round(seconds, 3)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
