#!/usr/bin/env python3
"""Runs AWS's Python driver, redshift_connector, against a proxy and prints what it saw as JSON.

    redshift_connector_check.py --host 127.0.0.1 --port 5439 --database dev --user u \
        --password p [--ssl verify-ca] [--wrong-password x]

The redshift_drivers suite (tests/e2e/redshift_drivers.rs) runs it with the interpreter of the
virtualenv scripts/test makes (REDSHIFT_CONNECTOR_PYTHON). `--ssl verify-ca` is the driver's
default TLS mode; it trusts the OS store (SSL_CERT_FILE) plus its bundled Redshift CA bundle.
Each check raises on a wrong answer: the script then prints the error and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import redshift_connector

ROWS = 100_000


def connect(args: argparse.Namespace, password: str) -> redshift_connector.Connection:
    ssl = args.ssl != "off"
    options = {"sslmode": args.ssl} if ssl else {}
    return redshift_connector.connect(
        host=args.host,
        port=args.port,
        database=args.database,
        user=args.user,
        password=password,
        ssl=ssl,
        timeout=60,
        **options,
    )


def error_fields(error: Exception) -> dict:
    """The ErrorResponse fields redshift_connector puts in an error's first argument."""
    fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    return {"code": fields.get("C"), "message": fields.get("M"), "type": type(error).__name__}


def expect(what: str, got, want) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--ssl", choices=["off", "verify-ca", "verify-full"], default="off")
    parser.add_argument("--wrong-password", help="first try this password, which must be refused")
    args = parser.parse_args()
    out: dict = {"driver_version": redshift_connector.__version__}

    if args.wrong_password is not None:
        try:
            connect(args, args.wrong_password).close()
            raise AssertionError("the wrong password was accepted")
        except redshift_connector.Error as error:
            out["wrong_password"] = error_fields(error)

    conn = connect(args, args.password)
    out["parameters"] = {k.decode(): v.decode() for k, v in conn.parameter_statuses}
    cur = conn.cursor()
    cur.execute("select current_user::text, session_user::text")
    out["current_user"], out["session_user"] = cur.fetchone()

    # Parameters, %s placeholders (the driver's default paramstyle, "format").
    cur.execute("select %s::int + %s::int, %s::text, %s::text is null", (2, 40, "ß-Ω ✓", None))
    total, text, is_null = cur.fetchone()
    expect("parameters", (total, text, is_null), (42, "ß-Ω ✓", True))
    out["parameters_ok"] = True

    # executemany into a temporary table, committed.
    cur.execute("create temporary table drivers_check (id int, name varchar(20))")
    cur.executemany(
        "insert into drivers_check (id, name) values (%s, %s)",
        [(1, "one"), (2, "two"), (3, "three")],
    )
    conn.commit()
    cur.execute("select count(*), sum(id), string_agg(name, ',' order by id) from drivers_check")
    count, total, names = cur.fetchone()
    expect("executemany", (count, total, names), (3, 6, "one,two,three"))
    out["executemany_rows"] = count

    # A 100 000-row result, every row checked.
    cur.execute(
        "select g, 'row-' || g::text from generate_series(1, %s) as g order by g", (ROWS,)
    )
    rows = cur.fetchall()
    expect("row count", len(rows), ROWS)
    for i, (g, label) in enumerate(rows, start=1):
        if g != i or label != f"row-{i}":
            raise AssertionError(f"row {i}: {(g, label)!r}")
    out["large_result_rows"] = len(rows)

    # An error inside a transaction, then rollback: the insert before it is gone and the
    # session works again.
    cur.execute("insert into drivers_check values (4, 'four')")
    try:
        cur.execute("select 1 / 0")
        raise AssertionError("division by zero succeeded")
    except redshift_connector.Error as error:
        out["error"] = error_fields(error)
    conn.rollback()
    cur.execute("select count(*) from drivers_check")
    expect("rows after rollback", cur.fetchone()[0], 3)
    out["rollback_ok"] = True

    # Autocommit: without it two statements share a transaction (same txid); with it each
    # statement is its own.
    def two_txids() -> tuple[int, int]:
        cur.execute("select txid_current()")
        first = cur.fetchone()[0]
        cur.execute("select txid_current()")
        return first, cur.fetchone()[0]

    first, second = two_txids()
    expect("one transaction without autocommit", first == second, True)
    conn.rollback()
    conn.autocommit = True
    first, second = two_txids()
    expect("a transaction per statement with autocommit", first != second, True)
    out["autocommit_ok"] = True

    conn.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # noqa: BLE001 (any failure is reported and fails the run)
        print(json.dumps({"failed": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
