"""Who a visitor is for the fairness rules (components/visitor.py): the browser session unless the operator trusts
the balancer (ATTN_EXPLORER_TRUST_FORWARDED=1); then the address the balancer appended to X-Forwarded-For, never
one the client wrote. tests/test_fair_use_balancer.py checks the same through a real HAProxy."""

from __future__ import annotations

import types

import pytest
import streamlit as st
from apptest_tools import charts, new_app

from components import settings, visitor


def test_the_right_most_forwarded_address_is_the_client():
    assert visitor.forwarded_client(["203.0.113.7"]) == "203.0.113.7"
    # a client's own header first, then the balancer's line (HAProxy adds its own header line)
    assert visitor.forwarded_client(["198.51.100.1, 10.0.0.1", "203.0.113.7"]) == "203.0.113.7"
    assert visitor.forwarded_client(["198.51.100.1,203.0.113.7"]) == "203.0.113.7"
    assert visitor.forwarded_client(["2001:db8::1"]) == "2001:db8::1"
    for bad in ([], [""], ["203.0.113.7, "], ["203.0.113.7, evil"], ["unknown"], ["203.0.113.7:4711"]):
        assert visitor.forwarded_client(bad) is None, bad


def test_the_header_counts_only_where_the_balancer_is_trusted():
    assert visitor.key_for("s1", ["203.0.113.7"], trusted=False) == "session s1"
    assert visitor.key_for("s1", ["203.0.113.7"], trusted=True) == "client 203.0.113.7"
    assert visitor.key_for("s2", ["1.2.3.4, 203.0.113.7"], trusted=True) == "client 203.0.113.7"
    assert visitor.key_for("s1", [], trusted=True) == "session s1"  # no balancer in between: the session


def test_the_balancer_is_not_trusted_by_default(monkeypatch):
    monkeypatch.delenv("ATTN_EXPLORER_TRUST_FORWARDED", raising=False)
    assert settings.load().trust_forwarded is False
    monkeypatch.setenv("ATTN_EXPLORER_TRUST_FORWARDED", "1")
    assert settings.load().trust_forwarded is True


def forwarded_by_the_balancer(monkeypatch, client_wrote: list[str]) -> None:
    """Every session's opening request carries X-Forwarded-For: what its client wrote, then the balancer's entry
    for the one client address 203.0.113.7 (AppTest cannot seed request headers: the session's client context
    is given here instead)."""
    import streamlit.runtime.context as context

    headers = iter(client_wrote)

    def client_context():
        return types.SimpleNamespace(headers=[("X-Forwarded-For", next(headers)), ("X-Forwarded-For", "203.0.113.7")])

    monkeypatch.setattr(context, "_get_client_context", client_context)


@pytest.mark.slow
@pytest.mark.parametrize("trusted", [False, True])
def test_two_tabs_of_one_client_share_its_cap_only_where_trusted(monkeypatch, trusted):
    monkeypatch.setenv("ATTN_EXPLORER_RUNS_PER_MINUTE", "1")
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "16")
    if trusted:
        monkeypatch.setenv("ATTN_EXPLORER_TRUST_FORWARDED", "1")
    else:
        monkeypatch.delenv("ATTN_EXPLORER_TRUST_FORWARDED", raising=False)
    forwarded_by_the_balancer(monkeypatch, [f"198.51.100.{i}" for i in range(1, 100)])
    st.cache_resource.clear()  # a fresh server: the run cache and its caps start empty
    try:
        first = new_app(text="The first tab of one client").run()
        second = new_app(text="The second tab of the same client").run()
    finally:
        st.cache_resource.clear()
    assert not first.exception and not first.warning and "pattern_fig" in charts(first)
    assert not second.exception
    if trusted:  # one client: its one run this minute is spent
        (warning,) = second.warning
        assert "Slow down" in warning.value and "pattern_fig" not in charts(second)
    else:  # the header is ignored: each tab is a visitor with its own cap
        assert not second.warning and "pattern_fig" in charts(second)
