"""Salesforce Outbound Messages (`POST /webhooks/salesforce`): a Case owned by an agent becomes an
`AssignmentEvent`, a Case closed a `CompletionEvent`.

An Outbound Message is SOAP 1.1 (`text/xml`), sent by a Flow's or a workflow rule's Outbound Message
action on Case with the fields the admin chose: `Envelope/Body/notifications` (namespace
`http://soap.sforce.com/2005/09/outbound`) holds `OrganizationId`, `ActionId`, `SessionId` (nil
unless the admin sends one), `EnterpriseUrl`, `PartnerUrl` and 1–100 `Notification` elements, each
an `Id` (the notification's: the same in each of Salesforce's resends, so it is the event id) and an
`sObject xsi:type="sf:Case"` whose children (namespace `urn:sobject.enterprise.soap.sforce.com`) are
the Case's fields by their API names. Read here: `Id` (required), `OwnerId`, `IsClosed`,
`CreatedById`, `LastModifiedDate` (the event's time; absent, the time it arrived) and the mapping's
`handoff_id_field` (`adapters.salesforce`), whose handoff is checked, never trusted alone.

A Case says its state, not what changed: a closed case is a completion (a user owning it took it
first, when none was recorded: one edit may take and close it); an open one owned by a user (005…)
is that user taking the handoff — unless it is the user who made it and still owns it (the
connector's API user: no assignment rule moved it, as `SalesforceAdapter` reads owners), so
`CreatedById` must be sent with `OwnerId`. Owned by a queue (00G…), nobody has it yet: `Ignored`.
The previous owner is not sent (`previous_agent_id` None): a case moved from one agent to another
ends no wait, as `connector.assignments.record` decides.

The XML is parsed by defusedxml with no DTD allowed: no entity expansion ("billion laughs"), no
external entities. Nothing here reads the body's free text beyond the fields named above.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from marshmallow import ValidationError

from connector.errors import MalformedRequest

from .events import AssignmentEvent, CompletionEvent, Ignored, stored_text, utc_moment

TARGET = "salesforce"
MAX_NOTIFICATIONS = 100  # Salesforce sends at most 100 notifications in one message
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_CASE_ID = re.compile(r"500[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", re.ASCII)
_OWNER_ID = re.compile(r"(?:005|00G)[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", re.ASCII)
_USER_ID = re.compile(r"005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", re.ASCII)
_ORG_ID = re.compile(r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", re.ASCII)
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}", re.ASCII)  # an API name: `Handoff_Id__c`

ACK = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
       b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
       b'<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>\n')

Event = AssignmentEvent | CompletionEvent | Ignored


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str  # 18 characters, as Salesforce sends it
    events: Sequence[Event]  # in the notifications' order; a case taken and closed in one edit gives two


def parse(raw_body: bytes, received_at: dt.datetime, handoff_id_field: str | None = None) -> OutboundMessage:
    """Raises marshmallow's ValidationError naming the element (`Notification.0.sObject.OwnerId`)
    when the body is not an Outbound Message of Cases (or holds more than 100 notifications), and
    `MalformedRequest` when it is not XML, or declares a DTD."""
    root = _xml(raw_body)
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise _invalid("(body)", "Not a SOAP 1.1 Envelope (http://schemas.xmlsoap.org/soap/envelope/).")
    notifications = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications")
    if notifications is None:
        raise _invalid("notifications", f"Missing: Body/notifications in the namespace {OUTBOUND}.")
    org = _text(notifications, f"{{{OUTBOUND}}}OrganizationId")
    if org is None or not _ORG_ID.fullmatch(org):
        raise _invalid("OrganizationId", "Must be a Salesforce organization id (00D…, 15 or 18 characters).")
    each = notifications.findall(f"{{{OUTBOUND}}}Notification")
    if not each:
        raise _invalid("Notification", "At least one notification is required.")
    if len(each) > MAX_NOTIFICATIONS:
        raise _invalid("Notification", f"At most {MAX_NOTIFICATIONS} notifications in one message, got {len(each)}.")
    field = handoff_id_field if handoff_id_field and _FIELD_NAME.fullmatch(handoff_id_field) else None
    events: list[Event] = []
    for index, notification in enumerate(each):
        events += _events(notification, f"Notification.{index}", received_at, field)
    return OutboundMessage(org, events)


def same_org(configured: str, sent: str) -> bool:
    """Whether the message's organization is the one configured: Setup shows the 15-character id,
    Salesforce sends the 18-character one (the same id with a case-safe suffix)."""
    return sent == configured or (len(configured) == 15 and sent[:15] == configured)


def _xml(raw_body: bytes) -> Element:
    try:
        # No DTD at all (SOAP allows none): entity expansion and external entities are refused with it.
        return fromstring(raw_body, forbid_dtd=True)
    except DefusedXmlException as err:
        raise MalformedRequest("The body declares a DTD or entities, which a SOAP message may not: refused unread.",
                               errors={"(body)": [f"no DTD or entity declaration allowed ({type(err).__name__})"]}) \
            from None
    except ParseError as err:
        raise MalformedRequest(f"The body is not well-formed XML ({err}).",
                               errors={"(body)": ["not well-formed XML"]}) from None


def _events(notification: Element, at: str, received_at: dt.datetime, field: str | None) -> list[Event]:
    event_id = _id(_text(notification, f"{{{OUTBOUND}}}Id"), f"{at}.Id")
    case = notification.find(f"{{{OUTBOUND}}}sObject")
    if case is None or not len(case):
        # "If the record is deleted before the notification is delivered, the notification contains
        # no data" (Salesforce): refused, it held back every other notification of the message.
        return [Ignored("a notification with no data: its case was deleted before it was sent")]
    kind = (case.get(f"{{{XSI}}}type") or "").rpartition(":")[2]
    if kind != "Case":
        raise _invalid(f"{at}.sObject", f"Must be a Case (xsi:type sf:Case), got {kind or 'no type'!r}: "
                       "the Outbound Message must be on the Case object.")
    where = f"{at}.sObject"
    case_id = _text(case, f"{{{SOBJECT}}}Id")
    if case_id is None or not _CASE_ID.fullmatch(case_id):
        raise _invalid(f"{where}.Id", "Must be a Case id (500…, 15 or 18 characters).")
    owner = _text(case, f"{{{SOBJECT}}}OwnerId")
    if owner is not None and not _OWNER_ID.fullmatch(owner):
        raise _invalid(f"{where}.OwnerId", "Must be a user (005…) or queue (00G…) id.")
    closed = _boolean(_text(case, f"{{{SOBJECT}}}IsClosed"), f"{where}.IsClosed")
    when = _time(_text(case, f"{{{SOBJECT}}}LastModifiedDate"), f"{where}.LastModifiedDate") or received_at
    # Anyone who may edit the case can write this field: a value that names no handoff of ours is
    # no name (it is checked, never trusted alone), not a fault holding the message back.
    named = _text(case, f"{{{SOBJECT}}}{field}") if field else None
    handoff_id = _handoff_named(named)
    events: list[Event] = []
    agent = _agent(case, owner, where)
    if agent is not None:
        events.append(AssignmentEvent(target=TARGET, event_id=event_id, ticket_id=case_id, handoff_id=handoff_id,
                                      agent_id=agent, agent_name=None, at=when, owner_only=True))
    if closed:
        events.append(CompletionEvent(target=TARGET, event_id=event_id, ticket_id=case_id, handoff_id=handoff_id,
                                      at=when))
    if not events:
        events.append(Ignored("an open case owned by a queue, by the user who made it, or by nobody sent"))
    return events


def _agent(case: Element, owner: str | None, where: str) -> str | None:
    """The user who holds the case, if one does: not a queue, nor the user who made the case and
    still owns it (the connector's API user, for the cases it makes)."""
    if owner is None or not _USER_ID.fullmatch(owner):
        return None
    creator = _text(case, f"{{{SOBJECT}}}CreatedById")
    if creator is None:
        # Without it the connector's own API user, owner of every case no rule moved, would be
        # recorded as the agent who took it: the admin adds the field to the Outbound Message.
        raise _invalid(f"{where}.CreatedById", "Required with a user's OwnerId: add CreatedById to the Outbound "
                       "Message's fields (it tells an agent from the API user that made the case).")
    return None if creator == owner else owner


def _handoff_named(text: str | None) -> str | None:
    try:
        return stored_text(text) if text else None
    except ValidationError:
        return None


def _text(parent: Element, tag: str) -> str | None:
    """The element's text, stripped; None when it is absent, nil or empty."""
    child = parent.find(tag)
    if child is None or child.get(f"{{{XSI}}}nil") == "true":
        return None
    text = (child.text or "").strip()
    return text or None


def _id(text: str | None, path: str) -> str:
    if text is None:
        raise _invalid(path, "Missing or empty.")
    try:
        return stored_text(text)
    except ValidationError as err:
        raise _invalid(path, str(err.messages[0] if isinstance(err.messages, list) else err.messages)) from None


def _boolean(text: str | None, path: str) -> bool:
    if text is None or text in ("false", "0"):
        return False
    if text in ("true", "1"):  # xsd:boolean
        return True
    raise _invalid(path, "Must be true or false.")


def _time(text: str | None, path: str) -> dt.datetime | None:
    """An xsd:dateTime (`2026-11-21T12:00:05.000Z`) in UTC; None when not sent."""
    if text is None:
        return None
    moment = utc_moment(text)
    if moment is None:
        raise _invalid(path, "Not an xsd:dateTime with a time zone (e.g. 2026-11-21T12:00:05.000Z).")
    return moment


def _invalid(path: str, message: str) -> ValidationError:
    return ValidationError({path: [message]})
