"""Webhooks, at least once, never lost: a run's notifications are written in its merge transaction and
POSTed after the commit to a real HTTP receiver on 127.0.0.1, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import subprocess
import sys
import threading
import time
from base64 import b64encode
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from etl.config import NotifyTarget, Settings
from etl.demo import change_a_few
from etl.errors import RetriableNotificationError
from etl.models import Notification, SyncRun
from etl.payload import MAX_CHANGES, PackageChange, RunSummary, body_of, build_payload
from etl.pipeline import Hooks, run_sync
from etl.results import FieldChange, RunCounts, SchemaChanges
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN, FakeKatapult
from etl.webhooks import WebhookSender

from .helpers import (
    CONFIRMING,
    WAIT_SECONDS,
    catalogue_tables,
    every_table,
    iso,
    query,
    recording_server,
    runs,
    scalar,
    sqlite_url,
    sync,
    sync_in_fives,
    sync_ok,
    wait_until,
    with_short_lock_wait,
    write_config,
)

README = Path(__file__).resolve().parent.parent / "README.md"
PENDING = "it stays pending for the next run or `katapult-etl notify`"


def notifications(url: str) -> list[tuple]:
    """(id, sync_run_id, target_url, attempts, last_error, delivered) of every notification."""
    return query(
        url,
        "SELECT id, sync_run_id, target_url, attempts, last_error, delivered_at IS NOT NULL "
        "FROM notifications ORDER BY id",
    )


def typed(url: str, statement) -> list[tuple]:
    """Rows of a statement on the models, with their types (timestamps as aware datetimes on every database)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement)]
    finally:
        engine.dispose()


def finished_at(url: str, run_id: int) -> str:
    [(instant,)] = typed(url, select(SyncRun.finished_at).where(SyncRun.id == run_id))
    return iso(instant)


def seeded_changes(api, seeded, twelve) -> list[dict]:
    """The seeded run's three changes, as its payload lists them: in permalink order."""
    changed, new = api.packages[0], api.packages[-1]
    [gone] = [package for package in twelve if package["id"] == seeded["gone"]]
    old_memory = changed["memory_in_gb"] - 1  # `seeded` added one

    def change(package, kind, fields=()):
        return {
            "package_id": package["id"],
            "name": package["name"],
            "permalink": package["permalink"],
            "change_type": kind,
            "fields": list(fields),
        }

    changes = [
        change(new, "created"),
        change(changed, "updated", [{"field": "memory_in_gb", "old": old_memory, "new": changed["memory_in_gb"]}]),
        change(gone, "removed"),
    ]
    return sorted(changes, key=lambda c: (c["permalink"], c["package_id"]))


def change_line(change: dict) -> str:
    fields = ", ".join(f"{f['field']} {f['old']} → {f['new']}" for f in change["fields"])
    return f"• {change['change_type']} {change['name']} ({change['permalink']})" + (f": {fields}" if fields else "")


# -- a changed run, an unchanged run ---------------------------------------------------------------


def test_a_changed_run_posts_one_notification_per_target_with_the_exact_payload_and_headers(
    cli, database_url, api, twelve, seeded, receiver
):
    first, second = receiver.url("/first"), receiver.url("/second")

    result = sync_in_fives(cli, database_url, api, "--notify-url", first, "--notify-url", second)

    assert (result.exit_code, result.err) == (0, "")
    changes = seeded_changes(api, seeded, twelve)
    expected = {
        "run_id": 2,
        "scope": "public",
        "api": "public",
        "status": "succeeded",
        "error": None,
        "finished_at": finished_at(database_url, 2),
        "counts": {"created": 1, "updated": 1, "restored": 0, "removed": 1, "unchanged": 10, "packages_seen": 12},
        "changes": changes,
        "changes_left_out": 0,
        "schema_changes": None,
        "mass_update": None,
        "text": "\n".join(
            ["katapult-etl run 2 of public: 1 created, 1 updated, 1 removed", *(change_line(c) for c in changes)]
        ),
    }
    assert [(d.path, d.payload) for d in receiver.received] == [("/first", expected), ("/second", expected)]
    for number, delivery in enumerate(receiver.received, start=1):
        assert delivery.body == body_of(expected)  # canonical JSON: sorted keys, no spaces
        assert delivery.headers["content-type"] == "application/json; charset=utf-8"
        assert delivery.headers["idempotency-key"] == f"katapult-etl-{number}"
        assert "x-katapult-etl-signature" not in delivery.headers  # no secret, no signature
    assert notifications(database_url) == [(1, 2, first, 1, None, True), (2, 2, second, 1, None, True)]
    stored = query(database_url, "SELECT payload FROM notifications ORDER BY id")
    assert [json.loads(p) if isinstance(p, str) else p for (p,) in stored] == [expected, expected]


def test_a_restored_package_is_told_with_what_changed_since_its_removal(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(3)
    sync_ok(cli, database_url, api)
    gone = api.packages.pop()
    sync_ok(cli, database_url, api)
    api.packages.append({**gone, "memory_in_gb": gone["memory_in_gb"] * 2})

    sync_ok(cli, database_url, api, "--notify-url", receiver.url())

    [delivery] = receiver.received
    assert delivery.payload["changes"] == [
        {
            "package_id": gone["id"],
            "name": gone["name"],
            "permalink": gone["permalink"],
            "change_type": "restored",
            "fields": [{"field": "memory_in_gb", "old": gone["memory_in_gb"], "new": gone["memory_in_gb"] * 2}],
        }
    ]
    assert delivery.payload["counts"]["restored"] == 1


def test_an_unchanged_run_writes_and_posts_nothing(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(3)
    sync_ok(cli, database_url, api, "--notify-url", receiver.url())

    again = sync_ok(cli, database_url, api, "--notify-url", receiver.url())

    assert "created=0 updated=0 restored=0 removed=0 unchanged=3" in again.out
    assert receiver.idempotency_keys() == ["katapult-etl-1"]  # the first run's, and nothing since
    assert notifications(database_url) == [(1, 1, receiver.url(), 1, None, True)]


def test_a_run_without_targets_writes_no_notification(cli, database_url, api, seeded):
    sync_ok(cli, database_url, api)

    assert notifications(database_url) == []


def test_a_dry_run_writes_and_posts_nothing(cli, database_url, api, seeded, receiver):
    result = sync(cli, database_url, api, "--dry-run", "--notify-url", receiver.url())

    assert result.exit_code == 0, result.err
    assert (receiver.received, notifications(database_url)) == ([], [])


def test_with_a_secret_each_post_is_signed_with_hmac_sha256_of_its_body(database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    target = NotifyTarget(receiver.url(), secret="It's a Secret to Everybody")
    settings = Settings(database_url=database_url, api_url=api.url, notify=(target,))

    run_sync(settings, Hooks(sleep=lambda seconds: None))

    [delivery] = receiver.received
    digest = hmac.new(b"It's a Secret to Everybody", delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["x-katapult-etl-signature"] == f"sha256={digest}"
    assert delivery.payload["counts"]["created"] == 2


def test_the_files_webhooks_are_signed_with_the_secret_their_secret_file_holds(cli, tmp_path, api, receiver):
    api.packages = synthetic_catalogue(2)
    (tmp_path / "hook.secret").write_text("It's a Secret to Everybody\n")
    config = write_config(
        tmp_path,
        f'notify = [\n  {{url = "{receiver.url("/signed")}", secret_file = "hook.secret"}},\n'
        f'  {{url = "{receiver.url("/plain")}"}},\n]\n',
    )

    result = cli("sync", "--config", str(config), "--database-url", sqlite_url(tmp_path), "--api-url", api.url)

    assert (result.exit_code, result.err) == (0, "")
    signed, plain = receiver.received
    digest = hmac.new(b"It's a Secret to Everybody", signed.body, hashlib.sha256).hexdigest()
    assert (signed.path, signed.headers["x-katapult-etl-signature"]) == ("/signed", f"sha256={digest}")
    assert (plain.path, "x-katapult-etl-signature" in plain.headers) == ("/plain", False)


def test_notify_url_flags_replace_the_files_webhooks(cli, tmp_path, api, receiver):
    api.packages = synthetic_catalogue(2)
    config = write_config(tmp_path, f'notify = [{{url = "{receiver.url("/from-file")}"}}]\n')
    database = sqlite_url(tmp_path)

    result = cli(
        "sync",
        "--config",
        str(config),
        "--database-url",
        database,
        "--api-url",
        api.url,
        "--notify-url",
        receiver.url("/from-flag"),
    )

    assert (result.exit_code, [d.path for d in receiver.received]) == (0, ["/from-flag"])


def test_a_secret_file_that_cannot_be_read_is_a_usage_error_before_anything_runs(cli, tmp_path, api, receiver):
    config = write_config(tmp_path, f'notify = [{{url = "{receiver.url()}", secret_file = "missing.secret"}}]\n')

    result = cli("sync", "--config", str(config), "--database-url", sqlite_url(tmp_path), "--api-url", api.url)

    assert (result.exit_code, result.out, result.err) == (
        2,
        "",
        f"katapult-etl: {config}: notify[1]: cannot read the secret file {tmp_path / 'missing.secret'}: "
        "No such file or directory\n",
    )
    assert (api.requests, list(tmp_path.glob("*.db"))) == ([], [])


def test_a_notification_says_the_keys_that_changed_and_a_mass_update(cli, database_url, api, receiver):
    sync_ok(cli, database_url, api)
    for package in api.packages:
        package["launch_price"] = 10

    result = sync(cli, database_url, api, "--notify-url", receiver.url())

    assert result.exit_code == 0, result.err
    [delivery] = receiver.received
    listed = len(api.packages)
    assert (delivery.payload["schema_changes"], delivery.payload["mass_update"]) == (
        "+launch_price",
        {"updated": listed, "listed": listed},
    )
    assert delivery.payload["text"].split("\n")[:3] == [
        f"katapult-etl run 2 of public: {listed} updated",
        "⚠ keys changed in the packages: +launch_price",
        f"⚠ {listed} of the {listed} packages listed in public were updated in one run: if a key changed in every "
        "package, --ignore-key KEY keeps such a change from making versions",
    ]


def test_the_readmes_payload_is_what_the_demos_second_run_posts(cli, tmp_path, receiver):
    readme = README.read_text()
    start = readme.index("```json\n", readme.index("webhook receives it (pretty-printed here"))
    shown = json.loads(readme[start + len("```json\n") : readme.index("```\n", start + 1)])
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    with FakeKatapult() as api:
        sync_ok(cli, url, api)
        change_a_few(api.packages)
        sync_ok(cli, url, api, "--notify-url", receiver.url())

    [delivery] = receiver.received
    assert {**delivery.payload, "finished_at": "T"} == {**shown, "finished_at": "T"}
    assert delivery.body == body_of(delivery.payload)  # what the README says of the body


# -- never lost, never twice -----------------------------------------------------------------------


def test_a_receiver_down_for_one_run_gets_every_notification_exactly_once_by_the_end_of_the_next(
    cli, database_url, api, receiver
):
    api.packages = synthetic_catalogue(4)
    url = receiver.url()
    receiver.stop()

    down = sync(cli, database_url, api, "--notify-url", url)

    assert down.exit_code == 0  # a delivery failure never changes the run's exit code
    assert "sync succeeded: scope=public" in down.out
    assert down.err.splitlines()[-1] == (
        f"katapult-etl: WARNING notification 1 to {url} not delivered after 3 attempt(s): connection refused; {PENDING}"
    )
    assert cli.sleeps == [1.0, 2.0]  # the retries' waits, injected: no real sleeping
    assert runs(database_url) == [("succeeded", None)]
    assert notifications(database_url) == [(1, 1, url, 3, "connection refused", False)]

    receiver.start()
    api.packages[0]["storage_in_gb"] += 5
    up = sync(cli, database_url, api, "--notify-url", url)

    assert (up.exit_code, up.err) == (0, "")
    assert receiver.idempotency_keys() == ["katapult-etl-1", "katapult-etl-2"]  # oldest first, each once
    assert [d.payload["run_id"] for d in receiver.received] == [1, 2]
    assert notifications(database_url) == [(1, 1, url, 4, "connection refused", True), (2, 2, url, 1, None, True)]


def test_a_pending_notification_goes_out_with_the_next_run_of_any_scope(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    api.organizations = {"org_acme": {"packages": []}}
    receiver.answers = [503, 503, 503]
    sync_ok(cli, database_url, api, "--notify-url", receiver.url())
    assert notifications(database_url) == [(1, 1, receiver.url(), 3, "HTTP 503 Service Unavailable", False)]

    other = sync(
        cli,
        database_url,
        api,
        "--organization-id",
        "org_acme",
        "--notify-url",
        receiver.url(),
        env={"KATAPULT_API_TOKEN": DEFAULT_TOKEN},
    )

    assert (other.exit_code, other.err) == (0, "")
    assert receiver.idempotency_keys() == ["katapult-etl-1"] * 4  # three refused, then taken
    assert notifications(database_url) == [(1, 1, receiver.url(), 4, "HTTP 503 Service Unavailable", True)]


def test_429_and_5xx_are_retried_honouring_retry_after(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    receiver.answers = [(429, {"Retry-After": "7"}), 502]

    result = sync(cli, database_url, api, "--notify-url", receiver.url())

    assert result.exit_code == 0
    assert cli.sleeps == [7.0, 2.0]
    assert len(receiver.received) == 3
    assert notifications(database_url) == [(1, 1, receiver.url(), 3, None, True)]
    assert result.err.splitlines() == [
        f"katapult-etl: WARNING notification 1 to {receiver.url()}: retrying in 7.0 s "
        "(attempt 1 failed: HTTP 429 Too Many Requests)",
        f"katapult-etl: WARNING notification 1 to {receiver.url()}: retrying in 2.0 s "
        "(attempt 2 failed: HTTP 502 Bad Gateway)",
    ]


def test_a_receiver_that_never_answers_is_cut_off_retried_and_given_up():
    def hold(connection) -> bytes:  # reads the request, never answers, until the sender hangs up
        request = b""
        while chunk := connection.recv(65536):
            request += chunk
        return request

    sleeps: list[float] = []
    with recording_server(hold) as (port, received), WebhookSender(sleep=sleeps.append, read_timeout=0.2) as sender:
        with pytest.raises(RetriableNotificationError) as caught:
            sender.send(NotifyTarget(f"http://127.0.0.1:{port}/hook"), 5, b"{}")
        wait_until(lambda: len(received) == 3, "the receiver saw each attempt end")

    assert (str(caught.value), caught.value.attempts, sleeps) == ("no answer within 0.2 s", 3, [1.0, 2.0])
    assert all(b"\r\nIdempotency-Key: katapult-etl-5\r\n" in request for request in received)


def test_a_refusal_other_than_429_is_not_retried_and_stays_pending(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    receiver.answers = [404]

    result = sync(cli, database_url, api, "--notify-url", receiver.url())

    assert result.exit_code == 0
    assert (len(receiver.received), cli.sleeps) == (1, [])
    assert notifications(database_url) == [(1, 1, receiver.url(), 1, "HTTP 404 Not Found", False)]


def test_a_failing_target_does_not_hold_up_another(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    down = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there

    result = sync(cli, database_url, api, "--notify-url", down, "--notify-url", receiver.url())

    assert result.exit_code == 0
    assert receiver.idempotency_keys() == ["katapult-etl-2"]
    assert notifications(database_url) == [
        (1, 1, down, 3, "connection refused", False),
        (2, 1, receiver.url(), 1, None, True),
    ]


# -- runs that do not land leave no notification ---------------------------------------------------


def test_a_run_that_fails_in_its_merge_leaves_no_notification(cli, database_url, api, seeded, receiver):
    backend = make_url(database_url).get_backend_name()
    if backend == "sqlite":
        pytest.skip("SQLite locks the whole database, not one table: see the killed runs in the slow tests")
    engine = create_engine(database_url)
    holder = engine.connect()
    try:
        # The merge writes every change, then waits for the notifications table, and gives up.
        if backend == "postgresql":
            holder.execute(text("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE"))
            impatient = with_short_lock_wait(database_url)
        else:
            # A lock on the gap after the last row (none yet): any INSERT waits for it. (LOCK TABLES would
            # hold up the run's first write to sync_runs, the table notifications refers to.)
            holder.execute(text("SELECT * FROM notifications FOR UPDATE"))
            wait = {"init_command": "SET SESSION innodb_lock_wait_timeout = 1"}
            impatient = make_url(database_url).update_query_dict(wait).render_as_string(hide_password=False)
        result = sync_in_fives(cli, impatient, api, "--notify-url", receiver.url())
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()

    message = {
        "postgresql": "database error: canceling statement due to lock timeout",
        "mysql": "database error: (1205, 'Lock wait timeout exceeded; try restarting transaction')",
    }[backend]
    assert (result.exit_code, result.err.splitlines()[-1]) == (1, f"katapult-etl: {message}")
    assert len(api.requests) == 3 + CONFIRMING  # both walks were made: the merge failed, at its last step
    assert catalogue_tables(database_url) == seeded["before"]
    assert [status for status, _ in runs(database_url)] == ["succeeded", "failed"]
    assert (notifications(database_url), receiver.received) == ([], [])


# -- katapult-etl notify and notifications ----------------------------------------------------------


def test_notify_delivers_what_is_pending(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    url = receiver.url()
    receiver.stop()
    sync_ok(cli, database_url, api, "--notify-url", url)
    api.packages.pop()
    sync_ok(cli, database_url, api, "--notify-url", url)
    receiver.start()
    cli.sleeps.clear()

    result = cli("notify", "--database-url", database_url, "--notify-url", url)

    assert (result.exit_code, result.out, result.err) == (0, "notify: delivered=2 failed=0 pending=0\n", "")
    assert receiver.idempotency_keys() == ["katapult-etl-1", "katapult-etl-2"]
    assert [status for *_, status in notifications(database_url)] == [True, True]

    again = cli("notify", "--database-url", database_url, "--notify-url", url)

    assert (again.exit_code, again.out) == (0, "notify: delivered=0 failed=0 pending=0\n")
    assert len(receiver.received) == 2


def test_notify_that_cannot_deliver_exits_1_and_keeps_it_pending(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    receiver.answers = [500] * 6
    sync_ok(cli, database_url, api, "--notify-url", receiver.url())

    result = cli("notify", "--database-url", database_url, "--notify-url", receiver.url())

    assert (result.exit_code, result.out) == (1, "notify: delivered=0 failed=1 pending=1\n")
    assert result.err.splitlines()[-1] == (
        "katapult-etl: 1 notification not delivered: pending until a run or `notify` delivers them"
    )
    assert notifications(database_url) == [(1, 1, receiver.url(), 6, "HTTP 500 Internal Server Error", False)]


def test_a_pending_notification_of_a_target_not_given_stays_pending_with_a_warning(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    receiver.answers = [500] * 3
    sync_ok(cli, database_url, api, "--notify-url", receiver.url("/old"))

    result = cli("notify", "--database-url", database_url, "--notify-url", receiver.url("/new"))

    assert (result.exit_code, result.out) == (0, "notify: delivered=0 failed=0 pending=1\n")
    assert result.err == (
        f"katapult-etl: WARNING 1 pending notification(s) to {receiver.url('/old')} not sent: "
        "that target is not configured (--notify-url)\n"
    )
    assert len(receiver.received) == 3


def test_notifications_lists_them_and_pending_only_the_pending(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(2)
    receiver.answers = [404]
    sync_ok(cli, database_url, api, "--notify-url", receiver.url("/a"), "--notify-url", receiver.url("/b"))
    created = typed(
        database_url, select(Notification.created_at, Notification.last_attempt_at).order_by(Notification.id)
    )
    (created_at, attempt_a), (_, attempt_b) = created

    listed = cli("notifications", "--database-url", database_url)
    pending = cli("notifications", "--database-url", database_url, "--pending", "--format", "jsonl")

    def second(instant):
        return f"{instant:%Y-%m-%dT%H:%M:%SZ}"

    a, b = receiver.url("/a"), receiver.url("/b")
    width = len(a)
    assert listed.out.splitlines() == [
        f"id  run  scope   {'target_url'.ljust(width)}  created_at            attempts  last_attempt_at       "
        "delivered_at          last_error",
        f" 1    1  public  {a}  {second(created_at)}         1  {second(attempt_a)}  pending               "
        "HTTP 404 Not Found",
        f" 2    1  public  {b}  {second(created_at)}         1  {second(attempt_b)}  {second(attempt_b)}",
    ]
    [row] = [json.loads(line) for line in pending.out.splitlines()]
    payload = row.pop("payload")
    assert row == {
        "id": 1,
        "sync_run_id": 1,
        "scope": "public",
        "target_url": a,
        "created_at": iso(created_at),
        "attempts": 1,
        "last_attempt_at": iso(attempt_a),
        "last_error": "HTTP 404 Not Found",
        "delivered_at": None,
    }
    assert payload["counts"]["created"] == 2
    assert cli("notifications", "--database-url", database_url, "--pending", "--format", "csv").out.startswith(
        "id,sync_run_id,scope,target_url,created_at,attempts,last_attempt_at,last_error,delivered_at,payload\n1,1,"
    )


def test_notifications_says_when_there_are_none(cli, database_url, api):
    api.packages = synthetic_catalogue(1)
    sync_ok(cli, database_url, api)

    assert cli("notifications", "--database-url", database_url).out == "no notifications yet\n"
    assert cli("notifications", "--database-url", database_url, "--pending").out == "no pending notifications\n"
    assert cli("notifications", "--database-url", database_url, "--json").out == "[]\n"


# -- the 1,000 cap ---------------------------------------------------------------------------------


def test_a_notification_lists_at_most_1000_changes_then_how_many_it_left_out(cli, database_url, api, receiver):
    api.packages = synthetic_catalogue(MAX_CHANGES + 5)

    sync_ok(cli, database_url, api, "--notify-url", receiver.url())

    [delivery] = receiver.received
    payload = delivery.payload
    assert payload["counts"]["created"] == 1005
    assert len(payload["changes"]) == 1000
    assert payload["changes_left_out"] == 5
    listed = sorted((p["permalink"], p["id"]) for p in api.packages)[:1000]
    assert [(c["permalink"], c["package_id"]) for c in payload["changes"]] == listed
    assert payload["text"].splitlines()[-1] == "… and 985 more (`katapult-etl changes --scope public` lists them all)"


def test_the_payload_builder_keeps_the_first_1000_changes_and_the_counts():
    changes = [PackageChange(f"vmpkg_{n:05d}", f"P-{n}", f"p-{n}", "updated") for n in range(1200)]
    run = RunSummary(
        7,
        "public",
        "public",
        "succeeded",
        _at("2026-12-03T08:00:00"),
        RunCounts(updated=1200),
        schema_changes=SchemaChanges(added=("launch_price",)),
    )

    payload = build_payload(run, changes)

    assert (len(payload["changes"]), payload["changes_left_out"]) == (1000, 200)
    assert payload["changes"][-1]["package_id"] == "vmpkg_00999"
    assert (payload["schema_changes"], payload["mass_update"]) == ("+launch_price", None)
    assert payload["text"].splitlines()[:2] == [
        "katapult-etl run 7 of public: 1200 updated",
        "⚠ keys changed in the packages: +launch_price",
    ]
    assert len(payload["text"].splitlines()) == 1 + 1 + 20 + 1


def test_the_text_shows_field_values_as_json_and_an_incomplete_runs_reason():
    change = PackageChange("vmpkg_1", "ROCK-1", "rock-1", "updated", (FieldChange("use_dedicated_cpus", None, True),))
    counts = RunCounts(updated=1)
    run = RunSummary(3, "public", "public", "incomplete", _at("2026-12-03T08:00:00"), counts, "1 package not stored")

    text_lines = build_payload(run, [change])["text"].splitlines()

    assert text_lines == [
        "katapult-etl run 3 of public: 1 updated",
        "(run incomplete: 1 package not stored)",
        "• updated ROCK-1 (rock-1): use_dedicated_cpus null → true",
    ]


def _at(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


# -- secrets ---------------------------------------------------------------------------------------

SECRET = "webhook-secret-7f3a9c"
PASSWORD = "hunter2-5b8e1d"


def test_secrets_and_url_credentials_never_reach_a_log_an_output_or_the_table(
    cli, database_url, api, receiver, caplog, tmp_path
):
    api.packages = synthetic_catalogue(2)
    url = f"http://katapult:{PASSWORD}@127.0.0.1:{receiver.port}/hook"
    clean = receiver.url()
    receiver.answers = [503, 503, 503]
    caplog.set_level(logging.DEBUG)
    settings = Settings(database_url=database_url, api_url=api.url, notify=(NotifyTarget(url, secret=SECRET),))

    run_sync(settings, Hooks(sleep=lambda seconds: None))  # fails three times: warnings, last_error
    api.packages.pop()
    run_sync(settings, Hooks(sleep=lambda seconds: None))  # delivers both
    outputs = [
        cli("-vv", "sync", "--database-url", database_url, "--api-url", api.url, "--notify-url", url),
        cli("-vv", "notify", "--database-url", database_url, "--notify-url", url),
        cli("notifications", "--database-url", database_url, "--format", "csv"),
        cli("notifications", "--database-url", database_url),
        cli("--log-format", "json", "-vv", "notify", "--database-url", database_url, "--notify-url", url),
    ]

    basic = "Basic " + b64encode(f"katapult:{PASSWORD}".encode()).decode()
    assert [d.headers["authorization"] for d in receiver.received] == [basic] * 5  # sent, as basic auth
    assert notifications(database_url) == [
        (1, 1, clean, 4, "HTTP 503 Service Unavailable", True),
        (2, 2, clean, 1, None, True),
    ]
    shown = caplog.text + "".join(result.out + result.err for result in outputs)
    assert clean in caplog.text
    stored = repr(every_table(database_url)) + repr(NotifyTarget(url, secret=SECRET)) + repr(settings)
    for secret in (SECRET, PASSWORD):
        assert secret not in shown
        assert secret not in stored
    if database_url.startswith("sqlite"):
        files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
        assert PASSWORD.encode() not in files and SECRET.encode() not in files


# -- usage errors ----------------------------------------------------------------------------------


NOT_A_WEB_URL = "give an http:// or https:// URL with a host"


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "ftp://example.com/hook",
            "--notify-url 'ftp://example.com/hook': give an http:// or https:// URL with a host",
        ),
        ("hooks.example.com/x", "--notify-url 'hooks.example.com/x': give an http:// or https:// URL with a host"),
        ("http://[::1/x", "--notify-url 'http://[::1/x': give an http:// or https:// URL with a host"),
        (
            f"http://me:{PASSWORD}@hooks.example.com/x",
            "refusing to send the credentials of --notify-url http://hooks.example.com/x over plain http: use https",
        ),
    ],
)
def test_a_bad_notify_url_is_a_usage_error_before_anything_is_written(cli, api, tmp_path, url, message):
    database = tmp_path / "k.db"

    for command in ("sync", "notify"):
        result = cli(
            command,
            "--database-url",
            f"sqlite:///{database}",
            *(("--api-url", api.url) if command == "sync" else ()),
            "--notify-url",
            url,
        )

        assert (result.exit_code, result.out, result.err) == (2, "", f"katapult-etl: {message}\n"), command
    assert not database.exists()
    assert api.requests == []


def test_notify_without_a_target_is_a_usage_error(cli, tmp_path):
    result = cli("notify", "--database-url", f"sqlite:///{tmp_path / 'k.db'}")

    assert (result.exit_code, result.out, result.err) == (
        2,
        "",
        "katapult-etl: notify needs the targets to deliver to: give --notify-url URL (repeatable), "
        "or a configuration file with notify\n",
    )


def test_notify_needs_an_existing_database_at_the_newest_schema(cli, tmp_path, receiver):
    database = tmp_path / "missing.db"

    result = cli("notify", "--database-url", f"sqlite:///{database}", "--notify-url", receiver.url())

    assert (result.exit_code, result.err) == (
        1,
        f"katapult-etl: {database} does not exist: run `katapult-etl sync` first\n",
    )
    assert not database.exists()


# -- metrics ---------------------------------------------------------------------------------------


def test_the_metrics_file_counts_the_pending_notifications_and_the_oldest_ones_age(cli, database_url, api, tmp_path):
    api.packages = synthetic_catalogue(2)
    metrics = tmp_path / "katapult_etl_public.prom"
    down = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there
    written = datetime(2026, 1, 1, tzinfo=UTC)
    cli.wall_clock = lambda: written  # the times the run records, so that the oldest one's age is known
    sync_ok(cli, database_url, api, "--notify-url", down, "--metrics-file", str(metrics))
    api.packages.pop()

    before = time.time()
    sync_ok(cli, database_url, api, "--notify-url", down, "--metrics-file", str(metrics))
    after = time.time()

    gauges = dict(line.rsplit(" ", 1) for line in metrics.read_text().splitlines() if not line.startswith("#"))
    assert gauges['katapult_etl_notifications_pending{scope="public"}'] == "2"
    age = float(gauges['katapult_etl_notifications_oldest_pending_age_seconds{scope="public"}'])
    assert before - written.timestamp() - 0.001 <= age <= after - written.timestamp() + 0.001
    assert notifications(database_url) == [
        (1, 1, down, 6, "connection refused", False),  # tried by both runs
        (2, 2, down, 0, None, False),  # not tried: it waits behind the older one, in order
    ]


def test_with_nothing_pending_the_metrics_say_0(cli, database_url, api, tmp_path, receiver):
    api.packages = synthetic_catalogue(2)
    metrics = tmp_path / "katapult_etl_public.prom"

    sync_ok(cli, database_url, api, "--notify-url", receiver.url(), "--metrics-file", str(metrics))

    gauges = dict(line.rsplit(" ", 1) for line in metrics.read_text().splitlines() if not line.startswith("#"))
    assert gauges['katapult_etl_notifications_pending{scope="public"}'] == "0"
    assert gauges['katapult_etl_notifications_oldest_pending_age_seconds{scope="public"}'] == "0"


# -- killed runs (real processes) ------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_killed_while_writing_its_notification_leaves_neither_it_nor_the_changes(
    database_url, api, twelve, tmp_path, receiver, cli
):
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("needs a lock another session holds while the run waits inside its merge")
    api.packages[0]["memory_in_gb"] += 1
    before, runs_before = catalogue_tables(database_url), runs(database_url)
    engine = create_engine(database_url)
    blocker = engine.connect()
    try:
        blocker.execute(text("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE"))
        notify = ("--notify-url", receiver.url())
        process = subprocess.Popen(
            [sys.executable, "-m", "etl", "sync", "--database-url", database_url, "--api-url", api.url, *notify],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _waiting_on_a_lock(database_url) == 1, "the run's merge waits for notifications")
        process.kill()
        assert process.wait(WAIT_SECONDS) == -9
    finally:
        blocker.rollback()
        blocker.close()
        engine.dispose()
    wait_until(lambda: _other_sessions(database_url) == 0, "the killed run's session is gone")

    assert catalogue_tables(database_url) == before
    assert runs(database_url) == [*runs_before, ("running", None)]
    assert (notifications(database_url), receiver.received) == ([], [])


@pytest.mark.slow
def test_a_run_killed_after_staging_began_leaves_no_notification(database_url, api, twelve, tmp_path, receiver):
    api.packages[0]["memory_in_gb"] += 1
    reached, opened = threading.Event(), threading.Event()

    def hold(page: int) -> None:
        if page == 2:
            reached.set()
            opened.wait(WAIT_SECONDS)

    api.on_request = hold
    options = ("--per-page", "5", "--concurrency", "1", "--notify-url", receiver.url())
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", "sync", "--database-url", database_url, "--api-url", api.url, *options],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert reached.wait(WAIT_SECONDS), "the run never asked for page 2"
        process.kill()
        assert process.wait(WAIT_SECONDS) == -9
    finally:
        opened.set()

    assert runs(database_url) == [("succeeded", None), ("running", None)]
    assert (notifications(database_url), receiver.received) == ([], [])


def _waiting_on_a_lock(url: str) -> int:
    return scalar(
        url,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database() AND pid <> pg_backend_pid()",
    )


def _other_sessions(url: str) -> int:
    return scalar(
        url,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'",
    )
