"""Under pytest-flask, whose pushed request context keeps ``flask.g`` alive across the test
client's requests, what the extension remembers per request must die with each request."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, render_template_string
from portal_fixtures import make_portal

WIDGET = (
    '{% from "thrillconnect/widgets.html" import optin_widget, jackpot_ticker %}'
    '{{ optin_widget(source_id="egyptian-gold") }}{{ jackpot_ticker(source_id="egyptian-gold") }}'
)


@pytest.fixture
def app(thrillconnect_sim: Any) -> Flask:
    """The app pytest-flask's ``client`` fixture serves."""
    portal = make_portal(thrillconnect_sim)

    @portal.get("/widgets")
    def widgets() -> str:
        return render_template_string(WIDGET)

    return portal


def test_logging_in_between_requests_changes_the_next_render(client: Any) -> None:
    anonymous = client.get("/widgets").get_data(as_text=True)
    assert client.get("/login/player_00001").status_code == 200

    logged_in = client.get("/widgets").get_data(as_text=True)

    assert "Log in to join this jackpot" in anonymous
    assert "Log in to join this jackpot" not in logged_in


def test_an_upstream_failure_in_one_request_does_not_stale_the_next(
    client: Any, thrillconnect_sim: Any
) -> None:
    thrillconnect_sim.faults(rest={"status": 503})
    try:
        failing = client.get("/widgets").get_data(as_text=True)
    finally:
        thrillconnect_sim.faults()

    recovered = client.get("/widgets").get_data(as_text=True)

    assert 'data-tc-state="unavailable"' in failing
    assert 'data-tc-state="unavailable"' not in recovered
