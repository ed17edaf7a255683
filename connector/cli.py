"""`flask --app wsgi connector …`: migrate, check, preview, worker."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from adapters import registry

from .db import Database, SchemaGap, reason
from .errors import ApiProblem, ConfigError
from .loop_failures import unreachable
from .models import DISMISSED, Callback, Delivery, names_a_row
from .settings import MAX_DAYS, MAX_SECONDS, RETENTION_MIN_DAYS, RETENTION_WHY, in_flask_command, web_server_problems


class _Group(AppGroup):
    """The commands, with the database away past `_migrated` said in one line: a SQLite file another
    program held locked, or a full disk, printed 86 lines of traceback from `purge`, `replay` and
    `dismiss` (a review). Each write is one transaction: what it did not finish it did not do. A query
    the database refused (a bug) keeps its traceback (`loop_failures.unreachable` tells them apart)."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except DBAPIError as err:
            if not unreachable(err):
                raise
            raise click.ClickException(f"the database failed: {reason(err)}; what this command had not "
                                       "finished was not done — run it again") from None


group = _Group("connector", help="Operate the handoff connector.")
log = logging.getLogger(__name__)


def _services():  # type: ignore[no-untyped-def]
    from .services import current_services

    return current_services()


MIGRATE = "flask --app wsgi connector migrate"
UNREACHABLE_WAIT_S = 5.0


class Unreachable(click.ClickException):
    """The database did not answer (`_migrated`); the worker waits for it instead of stopping."""


def _migrated():  # type: ignore[no-untyped-def]
    """The services, for a command that reads or writes the database: one line saying what to do
    when the database cannot be reached or its schema is not this code's, not a traceback."""
    services = _services()
    try:
        gap = services.db.schema_gap()
    except SQLAlchemyError as err:  # the driver's error, whichever: the operator gets one line
        raise Unreachable(f"the database cannot be reached: {reason(err)} (CONNECTOR_DATABASE_URL)") from None
    if gap is not None:
        raise click.ClickException(f"the database cannot be used by this code: {_advice(gap)}")
    return services


def _advice(gap: SchemaGap) -> str:
    """How the schema differs, and what closes the gap."""
    if not gap.migrate:
        return gap.words
    return f"{gap.words}. Run `{MIGRATE}` (starting the service with gunicorn runs it too)"


def _mappings_loaded(services):  # type: ignore[no-untyped-def]
    """The services, for a command that acts on the mappings (worker, preview): refused while an
    edit is, since the command started on none (`mappings.none_loaded`)."""
    refused = services.mapping_store.errors
    if refused is not None:
        raise click.ClickException(f"the mappings are refused: {refused}; fix the file first")
    return services


def _one_line(text: str | None) -> str:
    """A stored error in full, on its line: the cause (a refused connection, a DNS failure) is at
    its end, past where a cut would fall. The API and the admin page show the same text."""
    return " ".join((text or "").split())


@group.command("migrate")
def migrate() -> None:
    """Create or upgrade the database schema, and nothing else."""
    services = _services()
    try:
        services.db.migrate()
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"database schema is current ({services.db.dialect})")


@group.command("check")
@click.option("--vendors", is_flag=True, help="Also sign in to each enabled vendor with one read "
              "(Zendesk: who am I; Salesforce: a Case query, and Case's fields when the mapping names any; "
              "Slack: auth.test and the channel's history).")
def check(vendors: bool) -> None:
    """Validate settings, mappings and every enabled target; warn about insecure settings. Offline
    unless --vendors: the credentials are otherwise first tried by a delivery."""
    services = _services()
    problems: list[str] = []
    warnings: list[str] = []
    click.echo(f"targets: {', '.join(services.adapters)}")
    refused = ""
    try:  # a fresh, strict load: the live store keeps the last good set and would hide a bad edit
        services.mapping_store.load()
    except ConfigError as err:
        problems.append(str(err))  # names the file, line and key, and where the format is explained
        refused = " (refused: see the problem below)"  # the line alone read as if they were fine
    click.echo(f"mappings: {services.mappings.source}{refused}")
    try:
        no_writes = services.db.writes_refused()
        gap = services.db.schema_gap()
    except Exception as err:  # report, don't crash: check is for finding problems
        problems.append(f"CONNECTOR_DATABASE_URL: database unreachable ({reason(err)})")
    else:
        if no_writes is not None:
            problems.append(f"CONNECTOR_DATABASE_URL: the database is {no_writes}")
        state = "current" if gap is None else gap.state
        reached = "no file yet" if gap is not None and gap.no_file else "reachable"
        click.echo(f"database: {reached} ({services.db.dialect}), schema {state}")
        if gap is not None:  # behind: gunicorn's start migrates it (the other commands refuse until then)
            (warnings if gap.migrate else problems).append(f"the database cannot be used by this code: {_advice(gap)}")
    warnings.extend(services.warnings())
    problems.extend(web_server_problems(os.environ))
    if vendors:
        refused, warned = _probe(services.adapters, services.mappings.routing)
        problems.extend(refused)
        warnings.extend(warned)
    for line in warnings:
        click.echo(f"warning: {line}")
    for line in problems:
        click.echo(f"problem: {line}", err=True)
    if problems:
        sys.exit(1)
    click.echo("ok" if not warnings else f"ok with {len(warnings)} warning(s)")


def _probe(adapters, routing) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """Each enabled vendor's answer to one authenticated read (and to a read of each place
    `routing` sends it to), printed; the refusals and the warnings returned."""
    from adapters.errors import DeliveryError

    refused: list[str] = []
    warned: list[str] = []
    asked = 0
    for name, adapter in adapters.items():
        try:
            probed = adapter.probe(routing)
        except DeliveryError as err:
            refused.append(f"{name}: {err.message}")
            continue
        if probed is not None:
            asked += 1
            click.echo(f"{name}: {probed.said}")
            warned.extend(f"{name}: {line}" for line in probed.warnings)
    if not asked and not refused:
        click.echo("vendors: none enabled to sign in to (CONNECTOR_TARGETS)")
    return refused, warned


@group.command("preview")
@click.argument("packet_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--at", "at", default=None, metavar="TIME",
              help="Decide as at this RFC 3339 time (e.g. 2026-12-24T19:30:00+01:00) instead of now: "
                   "calendars, opening hours and holidays are read then.")
def preview(packet_file: Path, at: str | None) -> None:
    """Show what each vendor would receive for PACKET_FILE. Nothing is sent or stored."""
    from .previewing import preview_packet

    services = _mappings_loaded(_services())
    try:  # the observed waits only from a database in place: reading a missing SQLite file made it
        in_place = services.db.schema_gap() is None
    except Exception:  # unreachable: the wait is estimated without it, as the service would
        in_place = False
    try:
        result = preview_packet(services, packet_file.read_bytes(), read_waits=in_place, at=at)
    except ApiProblem as err:
        click.echo(json.dumps(err.body(), indent=2, ensure_ascii=False), err=True)
        sys.exit(1)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


@group.command("worker")
@click.option("--interval", type=click.FloatRange(0, MAX_SECONDS, min_open=True), default=None,
              help="Seconds between looks at the outbox "
              "(default CONNECTOR_POLL_INTERVAL_S).")
def worker(interval: float | None) -> None:
    """Run a dedicated delivery worker until SIGTERM/SIGINT (then release claimed work)."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while True:  # a database still starting (compose, a failover) is waited for, as the loop would
        try:
            services = _mappings_loaded(_migrated())
            break
        except Unreachable as err:
            click.echo(f"{err.message}; trying again in {UNREACHABLE_WAIT_S:g} s", err=True)
            if done.wait(UNREACHABLE_WAIT_S):
                return
    from .app import log_warnings

    log_warnings(services)
    services.start_loop(interval or services.settings.poll_interval_s)
    click.echo(f"worker {services.outbox.owner} running; Ctrl-C to stop")
    done.wait()
    services.stop()
    click.echo("worker stopped; leases released")


@group.command("deliveries")
@click.option("--state", default="dead", show_default=True,
              type=click.Choice(["created", "updated", "pending", "retrying", "failed", "dead", "dismissed"]),
              help="retrying: the pending ones tried at least once, as /readyz and /metrics count them "
                   "(pending lists both).")
@click.option("--target", type=click.Choice(list(registry.TARGETS)), default=None,
              help="Only this target.")  # a typo listed "0 deliveries", a false all-clear
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)  # 0 listed "0 deliveries"
def deliveries(state: str, target: str | None, limit: int) -> None:
    """List deliveries (by default the dead ones)."""
    from .outbox import list_deliveries

    rows = list_deliveries(_migrated().db, state=state, target=target, limit=limit)
    for row in rows:
        carried = "\t(carried since by later messages: nothing missing, not replayed)" if row.carried_since else ""
        # Past CONNECTOR_MAX_ATTEMPTS with no word why: rate limits are attempts not counted against it.
        limited = f" ({row.rate_limited} rate-limited)" if row.rate_limited else ""
        click.echo(f"{row.id}\t{row.handoff_id}\t{row.target}\t{row.state}\tattempts={row.attempts}{limited}\t"
                   f"{row.updated_at:%Y-%m-%d %H:%M:%S}\t{_one_line(row.last_error)}{carried}")
    click.echo(f"{len(rows)} deliver{'y' if len(rows) == 1 else 'ies'}", err=True)


@group.command("callbacks")
@click.argument("callback_ids", nargs=-1, type=int)
@click.option("--status", type=click.Choice(["pending", "sent", "dead", "dismissed"]), default="dead",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--resend", is_flag=True, help="Queue the given-up callbacks again: the ids named (dismissed ones "
                                             "too), or all the dead ones.")
@click.option("--dismiss", is_flag=True, help="Put given-up callbacks aside for good: the ids named, or with "
                                              "--all-dead every one. No longer owed (metrics, /readyz).")
@click.option("--all-dead", is_flag=True, help="With --dismiss: every dead callback.")
def callbacks_command(callback_ids: tuple[int, ...], status: str, limit: int, resend: bool, dismiss: bool,
                      all_dead: bool) -> None:
    """List status callbacks to bots (by default the given-up ones), queue given-up ones again, or
    dismiss them."""
    if resend and dismiss:
        raise click.UsageError("--resend or --dismiss, not both")
    if all_dead and not dismiss:
        raise click.UsageError("--all-dead goes with --dismiss (--resend alone takes every dead callback)")
    if dismiss and not callback_ids and not all_dead:  # as `dismiss` of deliveries: never all by omission
        raise click.UsageError("name callback ids, or pass --all-dead")
    if callback_ids and all_dead:
        raise click.UsageError("callback ids or --all-dead, not both")
    if callback_ids and not (resend or dismiss):  # listed all the same: a mistyped id read as an all-clear
        raise click.UsageError("callback ids go with --resend or --dismiss (the listing takes --status and --limit)")
    sender = _migrated().callbacks
    if dismiss:
        dismissed = sender.dismiss(_named(callback_ids))
        _said("dismissed", dismissed, "callback")
        if callback_ids and len(dismissed) < len(callback_ids):
            _left_alone(sender.db, Callback, set(callback_ids) - set(dismissed), "not given up", "callback")
        return
    if resend:
        queued = sender.resend(_named(callback_ids))
        _said("queued again", queued, "callback")
        if callback_ids and len(queued) < len(callback_ids):  # as `replay` says of deliveries
            _left_alone(sender.db, Callback, set(callback_ids) - set(queued),
                        "not given up, or a later state of its handoff was sent past it", "callback")
        elif not callback_ids and (overtaken := sender.overtaken_dead()):
            # "queued again 0 callbacks" said nothing of why while the gauge had shown them owed.
            click.echo(f"left alone {overtaken} given-up callback{'' if overtaken == 1 else 's'} a later state of "
                       "its handoff was sent past (the bot has the newer word; --dismiss puts them aside)")
        return
    rows = sender.listed(status, limit)
    for row in rows:
        # Named: the one time shown was the creation's, read as the last attempt's after a resend.
        finished = f"\tfinished={row.finished_at:%Y-%m-%d %H:%M:%S}" if row.finished_at else ""
        status_shown = f"{row.status} (a later state sent since)" if row.overtaken else row.status
        click.echo(f"{row.id}\t{row.handoff_id}\t{row.state}\t{status_shown}\tattempts={row.attempts}\t"
                   f"created={row.created_at:%Y-%m-%d %H:%M:%S}{finished}\t{_one_line(row.last_error)}")
    click.echo(f"{len(rows)} callback{'' if len(rows) == 1 else 's'}", err=True)


def _given_up_options(verb: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """What `replay` and `dismiss` take: ids, or --all-dead; --include-failed; --target."""
    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed([
            click.argument("delivery_ids", nargs=-1, type=int),
            click.option("--all-dead", is_flag=True, help=f"{verb} every dead delivery (of --target, when given)."),
            click.option("--include-failed", is_flag=True, help="Failed (refused) deliveries too."),
            click.option("--target", type=click.Choice(list(registry.TARGETS)), default=None, help="Only this target."),
        ]):
            command = option(command)
        return command
    return wrap


def _given_up_states(delivery_ids: tuple[int, ...], all_dead: bool, include_failed: bool) -> tuple[str, ...]:
    from .outbox import REPLAYABLE

    if not delivery_ids and not all_dead:
        raise click.UsageError("name delivery ids, or pass --all-dead")
    if delivery_ids and all_dead:  # the ids alone were taken: --all-dead did nothing, and nothing said so
        raise click.UsageError("delivery ids or --all-dead, not both")
    return REPLAYABLE if include_failed or delivery_ids else ("dead",)


@group.command("replay")
@_given_up_options("Replay")
def replay_command(delivery_ids: tuple[int, ...], all_dead: bool, include_failed: bool, target: str | None) -> None:
    """Queue dead (or failed) deliveries again; each is looked up at the vendor before any resend."""
    states = _given_up_states(delivery_ids, all_dead, include_failed)
    services = _migrated()
    replayed, left = services.replay_given_up(states, ids=_named(delivery_ids), target=target)
    _said("replayed", replayed, "delivery")
    if left:
        click.echo(f"of a target not enabled here (CONNECTOR_TARGETS), left alone: {' '.join(map(str, left))} "
                   "— enable the target to replay them, or `dismiss` them", err=True)
    if delivery_ids and len(replayed) + len(left) < len(delivery_ids):
        _left_alone(services.db, Delivery, set(delivery_ids) - set(replayed) - set(left),
                    "not dead or failed, or its messages carried since by later ones", "delivery")
    if left and delivery_ids:
        sys.exit(1)


@group.command("dismiss")
@_given_up_options("Dismiss")
def dismiss_command(delivery_ids: tuple[int, ...], all_dead: bool, include_failed: bool, target: str | None) -> None:
    """Put dead (or failed) deliveries aside for good: they will not be sent (their target disabled
    since, the customer reached another way). No longer counted as given up (metrics, /readyz), never
    replayed, and retention may forget their handoffs; a bot reads them as failed. Named by id or
    --target, a pending one of a target not in CONNECTOR_TARGETS, due and untaken for five minutes
    (no process serves it), is put aside too."""
    from .outbox import UNTAKEN_TO_DISMISS_S, dismiss

    states = _given_up_states(delivery_ids, all_dead, include_failed)
    services = _migrated()
    dismissed = dismiss(services.db, ids=_named(delivery_ids), states=states, target=target,
                        served=list(services.adapters))
    _said("dismissed", dismissed, "delivery")
    if delivery_ids and len(dismissed) < len(delivery_ids):
        _left_alone(services.db, Delivery, set(delivery_ids) - set(dismissed),
                    f"not dead or failed, nor pending for a target not enabled here and untaken for "
                    f"{UNTAKEN_TO_DISMISS_S} s", "delivery")


def _named(ids: tuple[int, ...]) -> list[int] | None:
    """The ids given that can name a row, as the API reads them (`names_a_row`): one past the
    database's integers is answered "no such …" by `_left_alone`, not an OverflowError's traceback.
    None when none were given (every one); [] when none of those given can be one (never all of them)."""
    return [i for i in ids if names_a_row(i)] if ids else None


def _said(done: str, ids: list[int], noun: str) -> None:
    """"replayed 2 deliveries: 14 15" ("queued again 1: 1" read as a riddle)."""
    many = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    listed = f": {' '.join(map(str, ids))}" if ids else ""
    click.echo(f"{done} {len(ids)} {noun if len(ids) == 1 else many}{listed}")


def _left_alone(db: Database, model: type[Delivery] | type[Callback], ids: set[int], why: str, noun: str) -> NoReturn:
    """The ids named that were not queued, and why: in another state, or no such row at all (a typo's
    `replay 9999` was answered "not dead or failed")."""
    with db.reading() as session:
        found = set(session.scalars(select(model.id).where(model.id.in_(sorted(filter(names_a_row, ids))))))
    if found:
        click.echo(f"{why}, left alone: {' '.join(map(str, sorted(found)))}", err=True)
    if ids - found:
        click.echo(f"no such {noun}: {' '.join(map(str, sorted(ids - found)))}", err=True)
    sys.exit(1)


def _retention_days(ctx: click.Context, param: click.Parameter, days: int | None) -> int | None:
    # click's own "3 is not in the range x>=7." left out why, which CONNECTOR_RETENTION_DAYS says.
    if days is not None and days < RETENTION_MIN_DAYS:
        raise click.BadParameter(f"must be at least {RETENTION_MIN_DAYS}, got {days}: {RETENTION_WHY}")
    return days


@group.command("purge")
@click.option("--days", type=click.IntRange(max=MAX_DAYS), callback=_retention_days, default=None,
              help="Forget handoffs older than this many days (default CONNECTOR_RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Only count the handoffs that would be forgotten.")
def purge_command(days: int | None, dry_run: bool) -> None:
    """Forget old handoffs that reached every target: their packets, follow-ups, deliveries and
    callbacks (README, "Retention"). Handoffs with a pending, dead or failed delivery are kept."""
    from . import retention

    services = _migrated()
    days = days or services.settings.retention_days
    if not days:
        raise click.UsageError("pass --days, or set CONNECTOR_RETENTION_DAYS")
    before = retention.cutoff(days)
    if dry_run:
        click.echo(f"would forget {retention.count(services.db, before)} handoff(s) created before "
                   f"{before:%Y-%m-%d %H:%M:%S} UTC")
        unsent = retention.unsent_callbacks(services.db, before)
        if unsent.get("dead"):
            click.echo(f"{unsent['dead']} status callback(s) given up (dead) would go with them, never to be resent "
                       "(`callbacks --resend` first)")
        if unsent.get(DISMISSED):
            click.echo(f"{unsent[DISMISSED]} status callback(s) put aside (dismissed) would go with them, never to "
                       "be sent (`callbacks --resend ID…` first, once the bot has a signing secret)")
        return
    try:
        purged = retention.purge(services.db, before)
    except Exception as err:  # what went before it failed is gone: said before the error (`_Group`)
        if (partial := getattr(err, "purged", None)) is not None and partial.handoffs:
            _forgotten(partial, before)
        raise
    _forgotten(purged, before)


def _forgotten(purged: Any, before: dt.datetime) -> None:
    click.echo(f"forgot {purged.handoffs} handoff(s), {purged.follow_ups} follow-up(s) and {purged.links} "
               f"conversation link(s) created before {before:%Y-%m-%d %H:%M:%S} UTC")
    if purged.dead_callbacks:
        click.echo(f"{purged.dead_callbacks} status callback(s) given up (dead) went with them, never resent")
    if purged.dismissed_callbacks:
        click.echo(f"{purged.dismissed_callbacks} status callback(s) put aside (dismissed) went with them, never sent")


def in_command() -> bool:
    """Whether the app is being made for a `flask` command other than the development server's.
    Those are short and print what they found (`check` prints the settings' warnings in its
    report: logged as well, each showed twice), so the app leaves the warnings to them; `worker`,
    which runs on, logs them itself."""
    return in_flask_command() not in (None, "run")


def init_app(app: Flask) -> None:
    app.cli.add_command(group)
    if in_flask_command() == "run":
        _say_a_schema_gap(app.extensions["connector"])


def _say_a_schema_gap(services) -> None:  # type: ignore[no-untyped-def]
    """The development server does not migrate (gunicorn's start does): on a database never
    migrated every request that uses it fails — a 500, a refused query being a fault, not an outage
    (`problems._database_away`) — with only `no such table` in the log. Said before the first one;
    it promised 503 once that had changed (a newcomer's review)."""
    try:
        gap = services.db.schema_gap()
    except SQLAlchemyError as err:  # said by each request as well; here before the first one
        log.warning("the database cannot be reached", extra={"reason": reason(err)})
        return
    if gap is not None:
        log.warning("the database cannot be used by this code: requests that use it fail (500) until it is migrated",
                    extra={"reason": _advice(gap)})
