"""The admin page (`/admin`): what an operator looks at — is the service ready, what waits, retries
or was given up, one handoff in full with what each target received — and the action it needs:
replaying deliveries. The JSON admin routes (`admin.py`) do the same for scripts.

Rendered on the server (Jinja2, autoescaped), with no JavaScript at all, under a policy that lets
the page load nothing but its own stylesheet: a customer's `<script>` in a transcript stays text.
The browser never holds the token: the admin signs in once with CONNECTOR_ADMIN_TOKEN and gets a
session cookie (HttpOnly, SameSite=Strict, path /admin, Secure behind an https CONNECTOR_PUBLIC_URL
or on a request over https) that ends 8 hours after signing in, signed with a key derived from that
token: every worker accepts it, and a new token signs everyone out. Each form that changes
something carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .. import answers, follow_up_packets
from ..brief import as_answered, render_brief
from ..db import reason
from ..models import Assignment, Handoff
from ..outbox import REPLAYABLE, UNTAKEN_TO_DISMISS_S, list_deliveries
from ..services import current_services
from .handoffs import detail_of
from .health import readiness

log = logging.getLogger(__name__)
bp = Blueprint("admin_page", __name__, url_prefix="/admin")

SESSION = dt.timedelta(hours=8)
LISTED = 50  # deliveries per state on the dashboard; the JSON route pages further
POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
          "frame-ancestors 'none'; base-uri 'none'")
_OPEN = ("admin_page.login", "admin_page.style")  # reachable before signing in


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, the cookie marked Secure also whenever the request itself
    came over https (CONNECTOR_PUBLIC_URL may be unset; `check` warns about that)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or (has_request_context() and request.is_secure))


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    settings = state.app.extensions["connector"].settings
    if settings.admin_token:
        state.app.secret_key = hmac.new(settings.admin_token.encode(), b"connector admin page session",
                                        hashlib.sha256).digest()
    state.app.session_interface = _Sessions()
    state.app.config.update(
        SESSION_COOKIE_NAME="connector_admin", SESSION_COOKIE_PATH="/admin", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION,
    )


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # handoff ids in the address stay here
    response.headers["Cache-Control"] = "no-store"  # customers' words are not left in a shared cache
    return response


@bp.before_request
def _signed_in() -> Response | tuple[str, int] | None:
    if not current_services().settings.admin_token:
        return _message("The admin page is off: set CONNECTOR_ADMIN_TOKEN to use it.", 404)
    if request.endpoint in _OPEN:
        return None
    # 8 hours from signing in, however busy: the cookie is re-signed as it is used, so its own
    # age says only how long since the last page.
    if not session.get("admin") or not 0 <= time.time() - float(session.get("since", 0)) < SESSION.total_seconds():
        session.clear()
        return redirect(url_for("admin_page.login"))
    if request.method == "POST" and not hmac.compare_digest(str(request.form.get("csrf", "")),
                                                            str(session.get("csrf", ""))):
        return _message("This form is out of date: reload the page and try again.", 400)
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        return render_template("admin/login.html")
    token = str(request.form.get("token", ""))
    if not hmac.compare_digest(token.encode(), current_services().settings.admin_token.encode()):
        log.warning("admin sign-in refused", extra={"remote_addr": request.remote_addr})
        return render_template("admin/login.html", error="That is not the admin token."), 401
    session.clear()
    session.permanent = True
    session.update(admin=True, csrf=secrets.token_urlsafe(32), since=time.time())
    log.info("admin signed in", extra={"remote_addr": request.remote_addr})
    return redirect(url_for("admin_page.dashboard"))


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("admin_page.login"))


@bp.get("/style.css")
def style() -> Response:
    return Response(render_template("admin/style.css"), mimetype="text/css")


@bp.get("")
def dashboard() -> str:
    services = current_services()
    ready, checks = readiness(services, whole=True)
    attention: list[Any] = []
    unserved: list[Any] = []
    recent: list[dict[str, Any]] = []
    paused: list[str] = []
    owed: dict[str, int] = {}
    if ready:
        try:
            # What a replay can take: not a batch whose messages a later one carried since.
            attention = [row for state in REPLAYABLE
                         for row in list_deliveries(services.db, state=state, target=None, limit=LISTED,
                                                    carried=False)]
            # Pending for a target this process does not serve (taken out of CONNECTOR_TARGETS): in no
            # list above, counted as waiting, and never to be sent unless a process serves it again.
            unserved = list_deliveries(services.db, state=None, target=None, limit=LISTED,
                                       unserved_by=list(services.adapters))
            with services.db.reading() as reading:
                handoffs = reading.scalars(select(Handoff).where(Handoff.follows_id.is_(None))
                                           .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(20)).all()
                later = answers.reached_later(reading, handoffs)  # as the API shows them
                # Who took each: without it the list could not tell a handoff waiting from one an agent has.
                taken = {a.handoff_id: a for a in reading.scalars(
                    select(Assignment).where(Assignment.handoff_id.in_([h.id for h in handoffs])))}
                recent = [answers.render(handoff, reached_later=later.get(handoff.id, []),
                                         holder=answers.holding(taken.get(handoff.id)))
                          | {"bot_id": handoff.bot_id, "created_at": handoff.created_at,
                             "taken_by": _agent(taken.get(handoff.id))} for handoff in handoffs]
            paused, owed = services.outbox.paused_targets(), services.callbacks.counts()
        except SQLAlchemyError as err:  # the database went away between the check and the lists
            ready, checks["database"] = False, {"ok": False, "error": type(err).__name__}
    return render_template("admin/dashboard.html", ready=ready, checks=checks, attention=attention, recent=recent,
                           paused=paused, owed=owed, csrf=session["csrf"], unserved=unserved,
                           untaken_s=UNTAKEN_TO_DISMISS_S)


def _agent(assignment: Assignment | None) -> str | None:
    return (assignment.agent_name or assignment.agent_id) if assignment is not None else None


@bp.get("/handoffs")
def find_handoff() -> Response:
    return redirect(url_for("admin_page.handoff", handoff_id=str(request.args.get("id", "")).strip() or "-"))


@bp.errorhandler(SQLAlchemyError)
def _database_away(err: SQLAlchemyError) -> tuple[str, int]:
    log.warning("admin page: database unavailable", extra={"error": reason(err)})
    return _message("The database does not answer right now; nothing was changed. Try again shortly.", 503)


@bp.get("/handoffs/<handoff_id>")
def handoff(handoff_id: str) -> str | tuple[str, int]:
    services = current_services()
    with services.db.reading() as reading:
        found = reading.get(Handoff, handoff_id) if "\x00" not in handoff_id else None
        if found is None:
            return _message(f"No handoff {handoff_id!r}.", 404)
        detail = detail_of(reading, found, whole_errors=True)
        packet = follow_up_packets.whole_of(reading, found) if found.follows_id else found.packet
        brief = render_brief(packet, found.id, update=found.follows_id is not None,
                             assignment=as_answered(found.assignment, found.customer_message, update=False)).text
        follows, delivery_ids = found.follows_id, {d.target: d.id for d in found.deliveries}
        # While no target had it and attempts failed, answers showed the message without its wait
        # (`answers.shown_message`): the bot may have shown the customer that one instead.
        retried = any(d.attempts > 1 for d in found.deliveries)
        # Routing's words: while attempts failed no ticket had been updated, and the team its
        # tickets stay with (`kept_tickets.keep`) was not told yet.
        delayed_text = (found.customer_message or {}).get("if_delayed") if retried else None
    payloads = {d["target"]: json.dumps(d["payload"], indent=2, ensure_ascii=False) if d["payload"] else None
                for d in detail["deliveries"]}
    # A pending delivery of a target this process does not serve read "next at <a time past>", as if
    # about to be tried, with no way to put it aside here (an operator's review).
    unserved = {d["target"] for d in detail["deliveries"] if d["state"] == "pending" and d["target"] not in services.adapters}
    return render_template("admin/handoff.html", h=detail, brief=brief, follows=follows, payloads=payloads,
                           delivery_ids=delivery_ids, delayed_text=delayed_text, csrf=session["csrf"],
                           unserved=unserved, untaken_s=UNTAKEN_TO_DISMISS_S)


@bp.post("/deliveries/<int:delivery_id>/retry")
def retry_one(delivery_id: int) -> Response:
    if current_services().replay_one(delivery_id):
        flash(f"Delivery {delivery_id} is being delivered again (looked up at the vendor first).")
    else:
        flash(f"Delivery {delivery_id} was not dead or failed, its target is not enabled here (dismiss it), or "
              "later messages carried its own since: nothing replayed.")
    return redirect(_back())


@bp.post("/deliveries/<int:delivery_id>/dismiss")
def dismiss_one(delivery_id: int) -> Response:
    if current_services().dismiss_one(delivery_id):
        flash(f"Delivery {delivery_id} is dismissed: it will not be sent, nor counted as given up.")
    else:
        flash(f"Delivery {delivery_id} was not dead or failed, nor pending for a target not enabled here that no "
              f"process has taken for {UNTAKEN_TO_DISMISS_S} s: nothing dismissed.")
    return redirect(_back())


@bp.post("/deliveries/retry")
def retry_dead() -> Response:
    replayed, left = current_services().replay_given_up(("dead",))
    flash(f"{len(replayed)} dead deliver{'y' if len(replayed) == 1 else 'ies'} queued again.")
    if left:
        flash(f"{len(left)} left alone, their target not enabled here (CONNECTOR_TARGETS): dismiss them, or enable "
              f"it: {' '.join(map(str, left[:20]))}")
    return redirect(url_for("admin_page.dashboard"))


def _back() -> str:
    """Where a form came from, if it is a page of ours; else the dashboard."""
    target = str(request.form.get("back", ""))
    ours = target.startswith("/admin") and "//" not in target and "\\" not in target and target.isprintable()
    return target if ours else url_for("admin_page.dashboard")


def _message(text: str, status: int) -> tuple[str, int]:
    return render_template("admin/message.html", message=text), status
