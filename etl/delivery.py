"""Deliver the pending notifications, oldest first, recording each attempt: after a run's commit, and
for `katapult-etl notify`.

Every pending notification whose target is configured is POSTed (etl/webhooks.py) and its outcome
committed at once, so a delivery interrupted half-way repeats at most the one notification in flight
(which its Idempotency-Key lets the receiver drop). A target that still fails after its retries is
left alone for the rest of the pass: its later notifications wait behind the first, in order. A
pending notification whose target is not configured now stays pending (its URL is stored without the
credentials and secret it needs), with a warning.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from . import outbox
from .config import NotifyTarget
from .database import existing
from .errors import NotificationError
from .payload import body_of
from .results import NotificationBacklog
from .webhooks import WebhookSender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReport:
    """What one pass did, and what is still pending after it (every target's, configured or not)."""

    delivered: int
    failed: int
    unconfigured: int  # pending notifications of targets not configured for this pass
    backlog: NotificationBacklog


def deliver_pending(
    engine: Engine, targets: Sequence[NotifyTarget], sender: WebhookSender, wall_clock: Callable[[], datetime]
) -> DeliveryReport:
    """POST every pending notification of the configured targets, oldest first; record each outcome."""
    by_url = {target.stored_url: target for target in targets}
    delivered = failed = 0
    failing: set[str] = set()
    with Session(bind=engine) as session:
        waiting = outbox.pending(session)
        session.commit()
        unconfigured = Counter(row.target_url for row in waiting if row.target_url not in by_url)
        for url, count in sorted(unconfigured.items()):
            log.warning(
                "%d pending notification(s) to %s not sent: that target is not configured (--notify-url)", count, url
            )
        for row in waiting:
            target = by_url.get(row.target_url)
            if target is None or row.target_url in failing:
                continue
            if _deliver(session, sender, target, row, wall_clock):
                delivered += 1
            else:
                failed += 1
                failing.add(row.target_url)
        backlog = outbox.backlog(session)
        session.commit()
    return DeliveryReport(delivered, failed, sum(unconfigured.values()), backlog)


def _deliver(
    session: Session,
    sender: WebhookSender,
    target: NotifyTarget,
    row: outbox.Pending,
    wall_clock: Callable[[], datetime],
) -> bool:
    """POST one notification and commit its outcome; True when the target took it."""
    body = body_of(outbox.payload_of(session, row.id))
    session.commit()  # no transaction held open while waiting on a receiver
    try:
        attempts = sender.send(target, row.id, body)
    except NotificationError as error:
        outbox.record_failed(session, row.id, error.attempts, wall_clock(), str(error))
        session.commit()
        log.warning(
            "notification %d to %s not delivered after %d attempt(s): %s; it stays pending for the next run "
            "or `katapult-etl notify`",
            row.id,
            row.target_url,
            error.attempts,
            error,
            extra={"notification_id": row.id, "target_url": row.target_url, "error": str(error)},
        )
        return False
    outbox.record_delivered(session, row.id, attempts, wall_clock())
    session.commit()
    log.info(
        "notification %d delivered to %s",
        row.id,
        row.target_url,
        extra={"notification_id": row.id, "target_url": row.target_url},
    )
    return True


def notify(
    database_url: str, targets: Sequence[NotifyTarget], sender: WebhookSender, wall_clock: Callable[[], datetime]
) -> DeliveryReport:
    """`katapult-etl notify`: one delivery pass on an existing database, at once, outside any run."""
    with existing(database_url) as engine:
        return deliver_pending(engine, targets, sender, wall_clock)
