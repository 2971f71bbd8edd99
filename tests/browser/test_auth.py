"""Signing in and out, failed sign-ins, password reset and e-mail verification in the browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Role
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory

from .conftest import App, emailed_link, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def member() -> str:
    """A verified user who owns the workspace 'acme'; returns their email."""
    user = UserFactory(email="lin@example.com")
    MembershipFactory(user=user, workspace=WorkspaceFactory(name="Acme", slug="acme"), role=Role.OWNER)
    return user.email


def test_log_in_and_out(app: App, member: str) -> None:
    page = app.new_page()
    log_in(page, member, FACTORY_PASSWORD)
    expect(page).to_have_url(re.compile(r"/w/acme/dashboard$"))
    expect(page.get_by_role("banner")).to_contain_text(member)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/account/login$"))
    expect(page.get_by_role("heading", name="Log in to Flowdeck")).to_be_visible()

    # Signed out, a workspace page sends you to log in, and back afterwards.
    page.goto("/w/acme/api-keys")
    expect(page).to_have_url(re.compile(r"/account/login\?next="))
    page.get_by_label("Email").fill(member)
    page.get_by_label("Password").fill(FACTORY_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/w/acme/api-keys$"))
    assert not app.js_errors, app.js_errors


def test_wrong_password_shows_an_error(app: App, member: str) -> None:
    page = app.new_page()
    log_in(page, member, "not-the-password-at-all", succeed=False)
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile("not correct|incorrect|invalid", re.I))
    expect(page).to_have_url(re.compile(r"/account/login$"))
    expect(page.get_by_role("button", name="Log in")).to_be_enabled()


def test_password_reset_through_the_emailed_link(app: App, member: str) -> None:
    page = app.new_page()
    page.goto("/account/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(member)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_text("Check your inbox")).to_be_visible()

    new_password = "a-brand-new-passphrase-7"
    page.goto(app.path_of(emailed_link(member, "/account/password/reset/key/")))
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("Confirm new password").fill(new_password)
    page.get_by_role("button", name="Set new password").click()
    expect(page).to_have_url(re.compile(r"/account/login\?reset=1$"))
    expect(page.get_by_text("Your password was changed")).to_be_visible()

    log_in(page, member, FACTORY_PASSWORD, succeed=False)
    expect(page.get_by_role("alert")).to_be_visible()  # the old password no longer works
    log_in(page, member, new_password)
    expect(page).to_have_url(re.compile(r"/w/acme/dashboard$"))


def test_sign_up_shows_the_servers_password_rules(app: App) -> None:
    page = app.new_page()
    page.goto("/account/signup")
    page.get_by_label("Email").fill("sam@example.com")
    page.get_by_label("Password").fill("1234567890")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile("numeric|common", re.I))
    expect(page.get_by_role("heading", name="Check your inbox")).to_have_count(0)


def test_a_broken_verification_link_says_so(app: App) -> None:
    page = app.new_page()
    page.goto("/account/verify-email/not-a-real-key")
    expect(page.get_by_role("heading", name="This link did not work")).to_be_visible()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
