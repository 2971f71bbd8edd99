"""The hosted pages a browser test clicks through: Checkout ("Pay") and the customer portal
("Change seats", "Cancel plan", "Cancel immediately", "Renew plan", "Return to site")."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

_STYLE = "body{font-family:sans-serif;max-width:40rem;margin:2rem auto}form{margin:.5rem 0}"


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>")


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"


def _date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def checkout_page(session: dict[str, Any], line_items: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<li>{escape(item['price'].get('nickname') or item['price']['id'])}: "
        f"{_money(item['price']['unit_amount'], item['price']['currency'])}"
        f"{' × ' + str(item['quantity']) if item['quantity'] is not None else ' per unit used'}</li>"
        for item in line_items
    )
    if session["status"] != "open":
        target = session["success_url"] if session["status"] == "complete" else session["cancel_url"]
        link = f'<a href="{escape(target)}">Continue</a>' if target else ""
        return _page("Checkout", f"<p>This checkout session is {escape(session['status'])}.</p>{link}")
    email = ""
    if not session["customer"] and not session["customer_email"]:
        email = '<p><label for="email">Email</label> <input id="email" name="email" type="email"></p>'
    total = _money(session["amount_total"], session["currency"] or "usd")
    cancel = f'<p><a href="{escape(session["cancel_url"])}">Cancel</a></p>' if session["cancel_url"] else ""
    return _page("Checkout", (
        f"<ul>{rows}</ul><p>Total due today: {total}</p>"
        f'<form method="post">{email}<button type="submit">Pay</button></form>{cancel}'
    ))


def portal_page(session: dict[str, Any], subscriptions: list[dict[str, Any]], notice: str = "") -> str:
    parts = [f'<p role="status">{escape(notice)}</p>' if notice else ""]
    if not subscriptions:
        parts.append("<p>No active plan.</p>")
    for subscription in subscriptions:
        sub_id = escape(subscription["id"])
        item = subscription["items"]["data"][0]
        price = item["price"]
        hidden = f'<input type="hidden" name="subscription" value="{sub_id}">'
        state = f"Status: {escape(subscription['status'])}"
        if subscription["cancel_at_period_end"]:
            state += f". Cancels on {_date(item['current_period_end'])}"
        else:
            state += f". Renews on {_date(item['current_period_end'])}"
        parts.append(f"<section><h2>{escape(price.get('nickname') or price['id'])}</h2><p>{state}.</p>")
        if price["recurring"]["usage_type"] == "licensed":
            parts.append(
                f"<p>Seats: {item['quantity']}</p>"
                f'<form method="post">{hidden}<input type="hidden" name="action" value="seats">'
                f'<label for="seats-{sub_id}">Seats</label> '
                f'<input id="seats-{sub_id}" name="quantity" type="number" min="1" value="{item["quantity"]}">'
                f' <button type="submit">Change seats</button></form>'
            )
        if subscription["cancel_at_period_end"]:
            parts.append(f'<form method="post">{hidden}<input type="hidden" name="action" value="renew">'
                         f'<button type="submit">Renew plan</button></form>')
        else:
            parts.append(f'<form method="post">{hidden}<input type="hidden" name="action" value="cancel">'
                         f'<button type="submit">Cancel plan</button></form>')
        parts.append(f'<form method="post">{hidden}<input type="hidden" name="action" value="cancel_now">'
                     f'<button type="submit">Cancel immediately</button></form></section>')
    if session["return_url"]:
        parts.append(f'<p><a href="{escape(session["return_url"])}">Return to site</a></p>')
    return _page("Billing portal", "".join(parts))


def message_page(title: str, message: str) -> str:
    return _page(title, f"<p>{escape(message)}</p>")
