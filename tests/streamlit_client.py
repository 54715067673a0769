"""A minimal Streamlit client for tests: one browser tab's session over a websocket, from a chosen loopback
source address (127.0.0.2, 127.0.0.3, …), so that tests can play several clients on one machine. It speaks the
protocol the Streamlit frontend speaks: a `rerun_script` back message with the page's query string, then the
forward messages of that run until `script_finished`."""

from __future__ import annotations

import re
import socket
import urllib.parse
from contextlib import ExitStack
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from components import chart_prefetch


@dataclass
class Page:
    """What one run of the script drew: alert texts (warnings, errors, infos, as a visitor reads them), progress
    bar updates, charts and exceptions."""

    alerts: list[str] = field(default_factory=list)
    progress: list[tuple[int, str]] = field(default_factory=list)  # every progress bar update: (percent, text)
    charts: int = 0
    exceptions: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)  # every new element's type, in order (KEY: the empty chart)
    places: dict[tuple[int, ...], str] = field(default_factory=dict)  # where each element ended up: its last type


class Refused(Exception):
    """The server (or the balancer) refused the connection with an HTTP status instead of a websocket."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status, self.body = status, body


def as_read(markdown: str) -> str:
    """An alert's Markdown as a visitor reads it: components.labels.markdown_literal's escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "").replace("&nbsp;", " ")


def connected_socket(url: str, source: str) -> socket.socket:
    """A TCP connection to url's host and port whose client end is bound to the `source` address."""
    parts = urllib.parse.urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30, source_address=(source, 0))


def http_get(url: str, source: str, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A plain HTTP/1.1 GET from `source`: (status, body)."""
    parts = urllib.parse.urlsplit(url)
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with connected_socket(url, source) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


class Tab:
    """One tab: a websocket session to a Streamlit server from `source`. `headers` are extra request headers
    (a client may send its own X-Forwarded-For)."""

    def __init__(self, url: str, source: str, headers: dict[str, str] | None = None, timeout: float = 120):
        parts = urllib.parse.urlsplit(url)
        self._stack = ExitStack()
        try:
            self.ws: ClientConnection = self._stack.enter_context(connect(
                f"ws://{parts.netloc}/_stcore/stream", sock=connected_socket(url, source), subprotocols=["streamlit"],
                additional_headers=headers or {}, open_timeout=timeout, max_size=None))
        except InvalidStatus as refused:
            response = refused.response
            raise Refused(response.status_code, response.body.decode(errors="replace")) from None
        self.timeout = timeout

    def run(self, query: dict[str, str]) -> Page:
        """Run the page as a browser does on opening this link, and collect what the run drew."""
        message = BackMsg()
        message.rerun_script.query_string = urllib.parse.urlencode(query)
        message.rerun_script.page_script_hash = ""
        self.ws.send(message.SerializeToString())
        page = Page()
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self.ws.recv(timeout=self.timeout))
            kind = forward.WhichOneof("type")
            if kind == "script_finished":
                return page
            if kind != "delta" or forward.delta.WhichOneof("type") != "new_element":
                continue
            element = forward.delta.new_element
            which = element.WhichOneof("type")
            prefetch = which == "plotly_chart" and element.plotly_chart.id.endswith(chart_prefetch.KEY)
            page.elements.append(chart_prefetch.KEY if prefetch else which)
            page.places[tuple(forward.metadata.delta_path)] = page.elements[-1]
            if which == "alert":
                page.alerts.append(as_read(element.alert.body))
            elif which == "progress":
                page.progress.append((element.progress.value, as_read(element.progress.text)))
            elif which == "plotly_chart" and not prefetch:
                page.charts += 1  # the figures, not the empty chart that asks the browser for Plotly
            elif which == "exception":
                page.exceptions.append(f"{element.exception.type}: {element.exception.message}")

    def close(self) -> None:
        self._stack.close()
