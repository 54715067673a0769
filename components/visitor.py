"""Who the visitor is, for the server's fairness rules (new runs per minute, one run at a time).

By default each browser session (tab) is one visitor. Behind a balancer the operator trusts
(ATTN_EXPLORER_TRUST_FORWARDED=1; scripts/serve.sh sets it for the replicas it starts on loopback behind its own
HAProxy), the visitor is the client's address, so that one client's tabs share one set of caps. The address is
the right-most entry of X-Forwarded-For: the one the trusted balancer appended. Entries to its left were sent
by the client and can say anything, so they are never used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import streamlit as st

from components import state
from components.settings import Settings

FORWARDED_FOR = "X-Forwarded-For"


def forwarded_client(values: Iterable[str]) -> str | None:
    """The address the last proxy appended, from every X-Forwarded-For header line in order; None if there is
    none or it is not an IP address."""
    entries = [entry.strip() for value in values for entry in value.split(",")]
    if not entries or not entries[-1]:
        return None
    try:
        return str(ipaddress.ip_address(entries[-1].strip("[]")))
    except ValueError:  # a port, a name or garbage: not an address a trusted balancer writes
        return None


def key_for(session: str, forwarded: Iterable[str], trusted: bool) -> str:
    """The fairness key: the client's address when the balancer is trusted and sent one, else the session."""
    client = forwarded_client(forwarded) if trusted else None
    return f"client {client}" if client else f"session {session}"


def key(settings: Settings) -> str:
    """This page's visitor, from the request that opened its session (`st.context.headers`)."""
    forwarded = st.context.headers.get_all(FORWARDED_FOR) if settings.trust_forwarded else []
    return key_for(state.session_id(), forwarded, settings.trust_forwarded)
