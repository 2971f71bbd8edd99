"""Quota warnings: when a workspace's runs or seats reach 80 % and 100 % of its plan's limit, its
Owners get one e-mail per threshold and billing period (a :class:`~billing.models.QuotaNotice`
row makes it once), and the web app shows a banner (``Usage`` says how close each limit is).

Crossing is noticed where the usage grows (billing/quotas.py), so nothing polls; the e-mail goes
after the creating transaction commits, and a rolled-back creation sends nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from accounts.models import Membership, Role, Workspace
from core.tenancy import rls_bypass

from .models import QuotaNotice

logger = logging.getLogger(__name__)

THRESHOLDS = (80, 100)


def crossed(before: int, after: int, limit: int | None) -> int | None:
    """The highest threshold (percent) that growing from ``before`` to ``after`` reached."""
    if not limit or after <= before:
        return None
    reached = [t for t in THRESHOLDS if before * 100 < t * limit <= after * 100]
    return reached[-1] if reached else None


def notify_later(workspace_id: Any, *, limit: str, threshold: int, period_start: dt.datetime,
                 used: int, allowed: int) -> None:
    transaction.on_commit(lambda: notify(workspace_id, limit=limit, threshold=threshold, period_start=period_start,
                                         used=used, allowed=allowed))


def notify(workspace_id: Any, *, limit: str, threshold: int, period_start: dt.datetime, used: int,
           allowed: int) -> bool:
    """Record and send one warning; False when this one was already sent this period."""
    with transaction.atomic(), rls_bypass():
        try:
            with transaction.atomic():
                QuotaNotice.objects.unscoped().create(workspace_id=workspace_id, period_start=period_start,
                                                      limit=limit, threshold=threshold)
        except IntegrityError:
            return False
        workspace = Workspace.objects.get(pk=workspace_id)
        owners = list(Membership.objects.filter(workspace=workspace, role=Role.OWNER)
                      .values_list("user__email", flat=True))
    what = "flow runs this billing period" if limit == "runs" else "seats (members and pending invitations)"
    consequence = ("New runs will be refused until the period ends or the plan is upgraded." if threshold >= 100
                   and limit == "runs" else
                   "No one else can be invited until a seat is freed or the plan is upgraded." if threshold >= 100
                   else "Nothing is refused yet.")
    body = (f"The Flowdeck workspace \"{workspace.name}\" has used {used:,} of its {allowed:,} {what} "
            f"({threshold} %). {consequence}\n\nSee usage and plans: "
            f"{settings.FLOWDECK_BASE_URL}/w/{workspace.slug}/billing\n")
    if owners:
        try:
            send_mail(f"{workspace.name}: {threshold} % of your Flowdeck {limit} quota used", body, None, owners)
        except Exception:  # the notice is recorded; a mail server outage must not fail anything else
            logger.exception("quota warning for workspace %s could not be mailed", workspace_id)
    return True


__all__ = ["THRESHOLDS", "crossed", "notify", "notify_later"]
