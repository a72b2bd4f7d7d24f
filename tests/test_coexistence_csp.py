"""The widgets under a strict Content-Security-Policy from Flask-Talisman (issue 11).

``assets(nonce=csp_nonce)`` with Talisman's ``csp_nonce`` (a bound method, passed uncalled as
operators write it) used to render ``nonce="<bound method …>"``, so Chromium refused the script.
Real Flask-Talisman, a real portal on 127.0.0.1, Chromium collecting every
``securitypolicyviolation`` event and console error. The policy is the example portal's,
the one ``docs/security.rst`` recommends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, render_template_string, session
from flask_talisman import Talisman
from playwright.sync_api import expect
from portal_fixtures import LiveServer

from example_portal.csp import NONCE_IN, POLICY
from flask_thrillconnect import Player, ThrillConnect

if TYPE_CHECKING:
    from browser_fixtures import ExamplePortal, Tab

pytest_plugins = ("browser_fixtures",)

PAGE = """<!doctype html>
<html lang="en"><head><title>CSP</title>
{{ thrillconnect.assets(nonce=csp_nonce) }}
{% if inline %}<script>window.inlineRan = true;</script>{% endif %}
</head><body>
{% from "thrillconnect/widgets.html" import jackpot_ticker, optin_widget, win_feed %}
{{ jackpot_ticker(source_id="egyptian-gold") }}
{{ optin_widget(source_id="egyptian-gold", login_url="/login") }}
{{ win_feed(limit=5) }}
</body></html>"""

#: Runs before any page script (Playwright injects it outside the page's CSP).
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def talisman_portal(sim: Any) -> Flask:
    app = Flask("talisman_portal")
    app.config.update(
        SECRET_KEY="csp-secret",
        THRILLCONNECT_URL=sim.url,
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_SERVICE_TOKEN=sim.service_token,
        THRILLCONNECT_TIMEOUT=(1, 2),
    )
    tc = ThrillConnect(app)
    # Plain HTTP on loopback: no redirect to https, no Secure-only session cookie.
    Talisman(
        app,
        force_https=False,
        session_cookie_secure=False,
        content_security_policy=POLICY,
        content_security_policy_nonce_in=NONCE_IN,
    )

    @tc.player_loader
    def load_player() -> Player | None:
        player_id = session.get("player_id")
        return sim.player(player_id) if player_id in sim.players else None

    @app.get("/")
    def page() -> str:
        return render_template_string(PAGE, inline=False)

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204

    @app.get("/inline")
    def inline() -> str:
        return render_template_string(PAGE, inline=True)

    @app.get("/login/<player_id>")
    def login(player_id: str) -> str:
        session["player_id"] = player_id
        return render_template_string(PAGE, inline=False)

    return app


@pytest.fixture
def csp_portal(thrillconnect_sim: Any) -> Iterator[ExamplePortal]:
    from browser_fixtures import ExamplePortal

    server = LiveServer(talisman_portal(thrillconnect_sim)).start()
    yield ExamplePortal(server, thrillconnect_sim)
    server.stop()
    server.app.extensions["thrillconnect"].close()


def violations(tab: Tab) -> list[str]:
    found: list[str] = tab.page.evaluate("() => window.__cspViolations")
    return found


# -- assets(nonce=…) ---------------------------------------------------------------------------


def nonce_app(sim: Any) -> Flask:
    app = Flask("nonce_app")
    app.config.update(
        SECRET_KEY="s",
        THRILLCONNECT_URL=sim.url,
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
    )
    ThrillConnect(app)
    return app


def nonces(html: str) -> set[str]:
    return set(re.findall(r'<(?:link|script)\b[^>]*\bnonce="([^"]*)"', html))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ thrillconnect.assets(nonce=make_nonce) }}", {"n0nce-from-callable"}),
        ("{{ thrillconnect.assets(nonce=make_nonce()) }}", {"n0nce-from-callable"}),
        ("{{ thrillconnect.assets(nonce='plain-string') }}", {"plain-string"}),
        ("{{ thrillconnect.assets(nonce=no_nonce) }}", set()),
        ("{{ thrillconnect.assets() }}", set()),
    ],
)
def test_assets_take_a_string_or_a_callable_nonce(
    thrillconnect_sim: Any, template: str, expected: set[str]
) -> None:
    app = nonce_app(thrillconnect_sim)
    with app.test_request_context("/"):
        html = render_template_string(
            template, make_nonce=lambda: "n0nce-from-callable", no_nonce=lambda: ""
        )

    assert nonces(html) == expected
    assert "bound method" not in html
    assert "lambda" not in html
    app.extensions["thrillconnect"].close()


def test_talismans_csp_nonce_passed_uncalled_is_the_headers_nonce(thrillconnect_sim: Any) -> None:
    app = talisman_portal(thrillconnect_sim)

    response = app.test_client().get("/")

    policy = response.headers["Content-Security-Policy"]
    (nonce,) = nonces(response.get_data(as_text=True))
    assert re.search(rf"script-src [^;]*'nonce-{re.escape(nonce)}'", policy)
    assert re.search(rf"style-src [^;]*'nonce-{re.escape(nonce)}'", policy)
    app.extensions["thrillconnect"].close()


def test_a_nonce_that_is_not_text_is_an_error(thrillconnect_sim: Any) -> None:
    app = nonce_app(thrillconnect_sim)
    with app.test_request_context("/"), pytest.raises(TypeError, match="nonce"):
        render_template_string("{{ thrillconnect.assets(nonce=lambda_) }}", lambda_=lambda: 42)
    app.extensions["thrillconnect"].close()


# -- Chromium under Talisman's policy ------------------------------------------------------------


def test_the_widgets_go_live_under_a_strict_csp_with_no_violation(
    csp_portal: ExamplePortal, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(csp_portal)
    tab.page.add_init_script(COLLECT_VIOLATIONS)
    tab.goto("/login/player_00001")
    ticker = tab.page.locator('[data-tc-widget="ticker"]')
    amount = ticker.locator("[data-tc-amount]").first

    tab.wait_until_live()  # the relay's WebSocket connected: connect-src allows it
    before = amount.inner_text()
    expect(amount).not_to_have_text(before)  # wait_until_live ticked: the ticker moved
    expect(ticker).to_have_attribute("data-tc-state", "live")
    optin = tab.page.locator('[data-tc-widget="optin"]')
    optin.get_by_role("button", name="Join jackpot").click()  # fetch with our CSRF token
    expect(optin.get_by_role("button", name="Leave jackpot")).to_be_visible()

    assert violations(tab) == []
    assert tab.console_errors == []
    accent = tab.page.evaluate(
        "() => getComputedStyle(document.querySelector('.tc-widget'))"
        ".getPropertyValue('--tc-accent')"
    )
    assert accent.strip() == "#ffd166"  # the nonce'd stylesheet applied


def test_the_violation_collector_sees_what_the_policy_refuses(
    csp_portal: ExamplePortal, open_tab: Callable[..., Tab]
) -> None:
    """A control: an inline script without the nonce is reported (so an empty list means it)."""
    tab = open_tab(csp_portal)
    tab.page.add_init_script(COLLECT_VIOLATIONS)
    tab.goto("/inline")
    tab.page.wait_for_function("() => window.__cspViolations.length > 0")

    assert any(v.startswith("script-src") for v in violations(tab))
    assert tab.page.evaluate("() => window.inlineRan") is None
    tab.console_errors.clear()  # Chromium logs the refusal; expected here
