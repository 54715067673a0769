"""Every replica behind the balancer in one table: the balancer's view (health check, open connections) and
each replica's own status (sessions, runs in flight and queued, memory).

    python -m cluster.report http://127.0.0.1:8500            # print the table
    python -m cluster.report --json http://127.0.0.1:8500     # the same as JSON
    python -m cluster.report --wait 120 http://127.0.0.1:8500 # first wait until every replica is UP

It reads the balancer's CSV status (/haproxy;csv) and /replica/<name>/status through the balancer, so it
needs nothing but the balancer's address.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import sys
import time
import urllib.request

BACKEND = "replicas"


def _get(url: str, auth: str | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, headers={"Cache-Control": "no-cache"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def balancer_rows(url: str, auth: str | None = None) -> list[dict[str, str]]:
    """The balancer's rows for each replica server (HAProxy's CSV status, one dict per server)."""
    text = _get(f"{url}/haproxy;csv", auth).decode()
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    return [r for r in rows if r["pxname"] == BACKEND and r["svname"] not in ("FRONTEND", "BACKEND")]


def replica(url: str, name: str) -> dict:
    """One replica's own status through the balancer, or {"error": ...} when it does not answer."""
    try:
        return json.loads(_get(f"{url}/replica/{name}/status"))
    except (OSError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}"}


def cluster_status(url: str, auth: str | None = None) -> list[dict]:
    """Per replica: name, address, balancer status and check, open connections, and the replica's own status."""
    result = []
    for row in balancer_rows(url, auth):
        entry = {"replica": row["svname"], "address": row.get("addr", ""), "balancer": row["status"],
                 "check": row.get("check_status", ""), "connections": int(row["scur"] or 0)}
        own = replica(url, row["svname"]) if row["status"].startswith("UP") else {}
        entry.update({k: v for k, v in own.items() if k != "replica"})
        result.append(entry)
    return result


def wait_until_up(url: str, seconds: float, auth: str | None = None) -> bool:
    """Wait until the balancer answers and every replica is UP; False after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            rows = balancer_rows(url, auth)
            if rows and all(r["status"].startswith("UP") for r in rows):
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


COLUMNS = ["replica", "address", "balancer", "check", "connections", "sessions", "runs_in_flight", "runs_queued",
           "reserved_mb", "cached_mb", "budget_mb", "rss_mb", "pid", "uptime_s"]


def table(entries: list[dict]) -> str:
    """A plain-text table; '-' where a value is unknown (a replica down, or runs not counted yet)."""
    cells = [COLUMNS] + [["-" if e.get(c) is None else str(e.get(c)) for c in COLUMNS] for e in entries]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the balancer, e.g. http://127.0.0.1:8500")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--wait", type=float, default=0, help="first wait up to this many seconds for all UP")
    parser.add_argument("--stats-auth", default=None, help="user:password of the balancer's status page")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if args.wait and not wait_until_up(url, args.wait, args.stats_auth):
        print(f"not every replica was UP after {args.wait:g} s", file=sys.stderr)
    try:
        entries = cluster_status(url, args.stats_auth)
    except OSError as err:
        print(f"cannot read {url}/haproxy;csv: {err}", file=sys.stderr)
        return 1
    print(json.dumps(entries, indent=1) if args.json else table(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
