"""Render the HAProxy configuration (cluster/haproxy.cfg.template) for a set of app replicas.

    python -m cluster.haproxy --port 8500 127.0.0.1:8601 127.0.0.1:8602      # local replicas r1, r2
    python -m cluster.haproxy --port 80 --bind 0.0.0.0 a=10.0.0.11:8501 b=10.0.0.12:8501

Each upstream is `host:port` (named r1, r2, … in order) or `name=host:port`; the name is the value of the
sticky cookie and the `<name>` in /replica/<name>/status. --client-conns and --client-rate set the per-client
limits (open sessions, new sessions per minute; past them the pages in cluster/pages/, status 429).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")
PAGES = Path(__file__).resolve().with_name("pages")  # the 429 pages a client past its limits gets
CLIENT_CONNS = 16  # open sessions (tabs of the app: one websocket each) per client address
CLIENT_RATE = 60  # new sessions per client address and minute
COOKIE = "attn_replica"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Upstream:
    name: str  # cookie value and status path name
    address: str  # host:port where `streamlit run replica.py` listens


def parse_upstreams(items: list[str]) -> list[Upstream]:
    """`host:port` or `name=host:port` items -> upstreams; unnamed ones are called r1, r2, … by position."""
    upstreams = []
    for index, item in enumerate(items, start=1):
        name, _, address = item.rpartition("=")
        name = name or f"r{index}"
        match = _HOST_PORT.match(address)
        if not _NAME.match(name):
            raise ValueError(f"replica name {name!r}: use letters, digits, '-' or '_' (at most 32)")
        if not match or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"upstream {address!r}: expected host:port")
        upstreams.append(Upstream(name, address))
    if not upstreams:
        raise ValueError("no upstreams: give at least one host:port")
    if len({u.name for u in upstreams}) != len(upstreams):
        raise ValueError("replica names must be distinct")
    return upstreams


def render(upstreams: list[Upstream], port: int, bind: str = "127.0.0.1", stats_auth: str | None = None,
           client_conns: int = CLIENT_CONNS, client_rate: int = CLIENT_RATE) -> str:
    """The HAProxy configuration: the template with the listening address, the per-client limits (open
    sessions, new sessions per minute) and one server line per upstream."""
    if stats_auth is not None and not re.fullmatch(r"[^\s:]+:\S+", stats_auth):
        raise ValueError("stats auth must be user:password without spaces")
    if client_conns < 1 or client_rate < 1:
        raise ValueError("the per-client limits must be at least 1")
    if '"' in str(PAGES):
        raise ValueError(f"the pages folder {PAGES} has a quote in its path")
    servers = "\n".join(f"    server {u.name} {u.address} cookie {u.name}" for u in upstreams)
    use_servers = "\n".join(f"    use-server {u.name} if {{ var(txn.replica) -m str {u.name} }}" for u in upstreams)
    values = {
        "@BIND@": bind,
        "@PORT@": str(port),
        "@COOKIE@": COOKIE,
        "@STATS_AUTH@": f"    stats auth {stats_auth}" if stats_auth else "",
        "@PAGES@": str(PAGES),
        "@CLIENT_CONNS@": str(client_conns),
        "@CLIENT_RATE@": str(client_rate),
        "@USE_SERVERS@": use_servers,
        "@SERVERS@": servers,
    }
    text = TEMPLATE.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("upstreams", nargs="+", help="host:port or name=host:port of each replica")
    parser.add_argument("--port", type=int, default=8500, help="port the balancer listens on")
    parser.add_argument("--bind", default="127.0.0.1", help="address the balancer listens on (0.0.0.0: all)")
    parser.add_argument("--stats-auth", default=None, help="user:password for /haproxy (default: open)")
    parser.add_argument("--client-conns", type=int, default=CLIENT_CONNS,
                        help=f"open sessions (tabs) per client address (default {CLIENT_CONNS})")
    parser.add_argument("--client-rate", type=int, default=CLIENT_RATE,
                        help=f"new sessions per client address and minute (default {CLIENT_RATE})")
    args = parser.parse_args(argv)
    try:
        print(render(parse_upstreams(args.upstreams), args.port, args.bind, args.stats_auth, args.client_conns,
                     args.client_rate), end="")
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
