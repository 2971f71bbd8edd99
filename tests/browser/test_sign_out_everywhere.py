"""A person who suspects a leak signs out everywhere from the account page: the dialog says which
personal keys in which workspaces go, a wrong password changes nothing, the right one lands them on
the sign-in page with what was done, their other browser is signed out, and their personal key is
refused by the server at once (a service account's key is not)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from accounts.models import Role
from tests.factories import PASSWORD, MembershipFactory, ServiceAccountFactory, make_key
from tests.sdk.conftest import LiveServer

from .conftest import App, axe_problems, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "a brand new and unusual passphrase 7"


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The real ASGI server: the other browser's page has its live socket open."""
    server = LiveServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("sign-out-server"))
    server.start(timeout=90)  # a loaded machine (two test workers, Chromium) can take a while
    yield server
    server.stop()


def _status(app: App, secret: str, slug: str) -> httpx.Response:
    return httpx.get(f"{app.url}/api/v1/workspaces/{slug}/", headers={"Authorization": f"Bearer {secret}"}, timeout=15)


def test_sign_out_everywhere_from_the_account_page(live_app: App, world_a, world_b) -> None:  # type: ignore[no-untyped-def]
    app = live_app
    person = world_a.users[Role.DEVELOPER]
    MembershipFactory(workspace=world_b.workspace, user=person, role=Role.DEVELOPER)
    _, globex_secret = make_key(workspace=world_b.workspace, user=person)
    acme_secret = world_a.keys[Role.DEVELOPER]
    ci = ServiceAccountFactory(workspace=world_a.workspace, name="ci", role=Role.DEVELOPER)
    _, ci_secret = make_key(workspace=world_a.workspace, service_account=ci)
    assert _status(app, acme_secret, "acme").status_code == 200  # verified, and cached by the server

    # The person's other browser, with a workspace page (and its live socket) open.
    other = app.new_page()
    log_in(other, person.email, PASSWORD)
    other.goto("/w/acme/api-keys")
    expect(other.get_by_role("heading", name="API keys", exact=True)).to_be_visible()

    page = app.new_page()
    log_in(page, person.email, PASSWORD)
    page.get_by_role("link", name="Account", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    count = page.get_by_test_id("personal-key-count")
    expect(count).to_have_text(re.compile(r"^2 personal API keys will be revoked: Acme \(1\), Globex \(1\)\."))

    page.get_by_role("button", name="Sign out everywhere and revoke my personal API keys").click()
    dialog = page.get_by_role("dialog", name="Sign out everywhere and revoke your personal API keys?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("including this one")
    expect(dialog.get_by_test_id("dialog-key-count")).to_have_text(re.compile(r"^2 personal API keys .*Acme \(1\), "
                                                                             r"Globex \(1\)"))
    password = dialog.get_by_label("Your current password")
    expect(password).to_be_focused()
    assert axe_problems(page) == []
    screenshot(page, "sign-out-everywhere-dialog")

    # A wrong password: told so, nothing happens.
    password.fill("not my password")
    dialog.get_by_role("button", name="Sign out everywhere", exact=True).click()
    expect(dialog.get_by_role("alert")).to_have_text("That is not your current password.")
    assert _status(app, acme_secret, "acme").status_code == 200
    other.reload()
    expect(other.get_by_role("heading", name="API keys", exact=True)).to_be_visible()

    # The right one: this browser lands on the sign-in page, told what was done.
    password.fill(PASSWORD)
    dialog.get_by_role("button", name="Sign out everywhere", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account/login\?signed_out=everywhere&revoked=2$"))
    expect(page.get_by_role("status").filter(has_text="You were signed out everywhere")).to_contain_text(
        "2 personal API keys were revoked"
    )
    screenshot(page, "signed-out-everywhere-login")
    page.goto("/w/acme/dashboard")
    expect(page).to_have_url(re.compile(r"/account/login\?next="))

    # The other browser is signed out: its open page leaves for the sign-in page, and so does any
    # page it opens next.
    expect(other).to_have_url(re.compile(r"/account/login"))
    other.goto("/w/globex/api-keys")
    expect(other).to_have_url(re.compile(r"/account/login\?next="))
    expect(other.get_by_role("heading", name="Log in to Flowdeck")).to_be_visible()

    # Keys: the person's are refused at once in both workspaces; the service account's still work.
    refused = _status(app, acme_secret, "acme")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "api_key_revoked"
    assert _status(app, globex_secret, "globex").status_code == 401
    assert _status(app, ci_secret, "acme").status_code == 200
    assert _status(app, world_a.keys[Role.OWNER], "acme").status_code == 200

    # Logging in again works with the same password, and the account page shows no keys left.
    log_in(page, person.email, PASSWORD)
    page.goto("/account")
    expect(page.get_by_test_id("personal-key-count")).to_have_text(
        "You have no personal API keys that still work, so none will be revoked."
    )

    # The password change beside it keeps this browser signed in; the new password is the one that works.
    form = page.get_by_role("form", name="Change password")
    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    form.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").filter(has_text="Your password was changed.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    log_in(app.new_page(), person.email, NEW_PASSWORD)
    assert not app.js_errors, app.js_errors
