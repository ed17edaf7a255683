"""Response bodies (contract §3). Used to serialize answers and to generate `/openapi.json`."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

TICKET_STATES = ("created", "updated", "pending", "failed", "dead")
# What an admin's listings show: a bot reads `dismissed` as `failed` (`answers.bot_state`).
DELIVERY_STATES = (*TICKET_STATES, "dismissed")
HANDOFF_STATES = ("delivered", "partial", "pending", "failed")


class TicketSchema(Schema):
    target = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(TICKET_STATES))
    id = fields.String(required=True, allow_none=True)
    url = fields.String(required=True, allow_none=True)
    attempts = fields.Integer(required=True)
    error = fields.String(required=True, allow_none=True)


class AssignmentSchema(Schema):
    team = fields.String(required=True, allow_none=True)
    queue = fields.String(required=True, allow_none=True)
    agent = fields.String(required=True, allow_none=True, metadata={
        "description": "Who has the handoff: the agent recorded taking it (name, else id) once one is, "
                       "routing's pick (a sticky rule's previous agent) until then."})
    priority = fields.String(required=True, allow_none=True)
    rule = fields.String(required=True, allow_none=True)
    trace = fields.List(fields.String(), required=True)


class CustomerMessageSchema(Schema):
    locale = fields.String(required=True)
    text = fields.String(required=True)


class DroppedPartSchema(Schema):
    part = fields.String(required=True)
    reason = fields.String(required=True)
    field = fields.String(metadata={
        "description": "With `part: routing`: the routing id the vendor refused (`assignee_id`, `owner_id`), the "
                       "ticket made without it. A refused agent is no longer `assignment.agent`."})
    file = fields.String(metadata={
        "description": "The file this part was to be sent as, which the vendor refused (Zendesk: attachments off "
                       "in the account, or a role that may not upload); `reason` says what of the part is on the "
                       "ticket without it."})


class AttachedPartSchema(Schema):
    part = fields.String(required=True)
    file = fields.String(required=True)
    reason = fields.String(required=True)


class ReceiptSchema(Schema):
    delivered = fields.List(fields.String(), required=True)
    dropped = fields.List(fields.Nested(DroppedPartSchema), required=True)
    attached = fields.List(fields.Nested(AttachedPartSchema),
                           metadata={"description": "Parts sent as a file because they exceed the vendor's limits."})
    redacted = fields.Dict(keys=fields.String(), values=fields.Integer(),
                           metadata={"description": "PII masked before leaving, per kind (mapping `redact:`); "
                                                    "the preview target's per vendor and kind (`slack.card`)."})


class LinksSchema(Schema):
    self = fields.String(required=True, metadata={
        "description": "Where to read this again: a path relative to the connector's base URL (which may "
                       "itself end in a path prefix, as CONNECTOR_PUBLIC_URL's), as the contract shows it. The "
                       "answer's Location header carries it resolved."})


class HandoffResponseSchema(Schema):
    """The answer to `POST /v1/handoffs` (and the body replayed for a repeated idempotency key)."""

    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(HANDOFF_STATES))
    conversation_id = fields.String(required=True)
    tickets = fields.List(fields.Nested(TicketSchema), required=True)
    assignment = fields.Nested(AssignmentSchema, required=True)
    customer_message = fields.Nested(CustomerMessageSchema, required=True)
    estimated_wait_seconds = fields.Integer(required=True, allow_none=True)
    context_receipt = fields.Dict(keys=fields.String(), values=fields.Nested(ReceiptSchema), required=True)
    links = fields.Nested(LinksSchema, required=True)
    warnings = fields.List(fields.String(), metadata={
        "description": "Present (in the answer to the POST, its replay and a read of the handoff) when part of "
                       "what the bot asked for will not happen, each saying what and why, as this connector's "
                       "settings say it now (a `callback` from a bot with no signing secret to sign it with; "
                       "`vendor_extra` for a target the handoff does not go to; a `conversation.language` with "
                       "no customer messages of its own, the message then in the default locale; a "
                       "`routing.department` that names no team; a `routing.preferred_agent` routing did not "
                       "assign, saying why; a key that looks like a misspelt field, such as `escalation.urgncy`, "
                       "kept but not acted on)."})


class MessagesResponseSchema(Schema):
    """The answer to `POST /v1/handoffs/{id}/messages`: one batch of messages sent while the
    handoff waited, and where each of its targets has it."""

    id = fields.String(required=True)
    handoff_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(HANDOFF_STATES))
    messages = fields.Integer(required=True, metadata={"description": "How many messages the batch holds."})
    received_at = fields.String(required=True)
    tickets = fields.List(fields.Nested(TicketSchema), required=True)
    context_receipt = fields.Dict(
        keys=fields.String(), values=fields.Nested(ReceiptSchema), required=True,
        metadata={"description": "What reached each finished target: `transcript` (these messages) when the "
                                 "ticket had the rest, the whole handoff's parts when they had to go again."})
    links = fields.Nested(LinksSchema, required=True)
    warnings = fields.List(fields.String(), metadata={
        "description": "Present in the answer to the POST (and its replay) when something in the batch looks "
                       "wrong, each saying what and where: a key that looks like a misspelt field, such as "
                       "`messages.*.atachments`, kept but not acted on; messages not oldest first, or older "
                       "than the latest message the handoff already has (they are shown as sent, after it)."})


class MessagesListSchema(Schema):
    items = fields.List(fields.Nested(MessagesResponseSchema), required=True)


class DeliveryDetailSchema(Schema):
    target = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(TICKET_STATES))
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.String(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    payload = fields.Dict(
        required=True, allow_none=True,
        metadata={"description": "What was sent to the vendor (for `preview`: what each vendor would receive)."},
    )


class AssignedSchema(Schema):
    target = fields.String(required=True, metadata={"description": "The target that reported it."})
    ticket_id = fields.String(required=True)
    agent_id = fields.String(required=True, metadata={"description": "The vendor's id of the agent."})
    agent_name = fields.String(required=True, allow_none=True)
    assigned_at = fields.String(required=True)
    wait_seconds = fields.Integer(required=True, metadata={"description": "From the handoff to the assignment."})
    routed = fields.Boolean(required=True, metadata={
        "description": "The agent routing itself put on the ticket (a sticky previous agent), as the vendor "
                       "reported, or the agent who already had the conversation's ticket when this handoff "
                       "updated it (Zendesk's answer to the update): not a wait anyone observed. Another agent "
                       "taking the ticket later replaces it."})


class CallbackDetailSchema(Schema):
    state = fields.String(required=True, metadata={"description": "The handoff state it reports (contract §6)."})
    status = fields.String(required=True, validate=validate.OneOf(("pending", "sent", "dead")))
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.String(required=True, allow_none=True)
    finished_at = fields.String(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True,
                               metadata={"description": "Why the last attempt failed, or why it was given up."})


class HandoffDetailSchema(HandoffResponseSchema):
    """`GET /v1/handoffs/{id}`: the answer plus what each target received."""

    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    completed_at = fields.String(
        required=True, allow_none=True,
        metadata={"description": "When a vendor said the handoff's ticket was solved (Zendesk), whether or not "
                                 "the bot asked for the `completed` callback; null until then, and kept if the "
                                 "ticket is reopened. From then on no wait is quoted, and the message is the one "
                                 "shown once an agent has the handoff."})
    deliveries = fields.List(fields.Nested(DeliveryDetailSchema), required=True)
    assigned = fields.Nested(
        AssignedSchema, required=True, allow_none=True,
        metadata={"description": "The agent who took the handoff, as a vendor reported it (Zendesk assignee "
                                 "event, Slack Claim button, Zendesk's answer to an update of a ticket "
                                 "an agent has); null until then."},
    )
    callbacks = fields.List(
        fields.Nested(CallbackDetailSchema), required=True,
        metadata={"description": "The status callbacks owed to the bot's `callback.url`, oldest first."},
    )
    messages = fields.List(
        fields.Nested(MessagesResponseSchema), required=True,
        metadata={"description": "The batches of messages sent while the handoff waited "
                                 "(`POST /v1/handoffs/{id}/messages`), oldest first."},
    )


class CallbackTicketSchema(Schema):
    target = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(TICKET_STATES))
    id = fields.String(required=True, allow_none=True)
    url = fields.String(required=True, allow_none=True)


class CallbackAgentSchema(Schema):
    id = fields.String(required=True, metadata={"description": "The vendor's id of the agent."})
    name = fields.String(required=True, allow_none=True)
    target = fields.String(required=True, metadata={"description": "The target that reported it."})
    routed = fields.Boolean(required=True, metadata={
        "description": "The agent routing itself put on the ticket (a sticky previous agent), as the vendor "
                       "reported, or the one who already had the conversation's ticket when this handoff "
                       "updated it. Another agent taking the ticket later replaces it in `GET /v1/handoffs/{id}` "
                       "(`assigned`); the bot gets one `assigned` callback per handoff, this one."})


class HandoffStatusSchema(Schema):
    """What the connector POSTs to a packet's `callback.url` (contract §6), signed as in Standard
    Webhooks with the bot's secrets; `webhook-id` is `{handoff_id}.{state}` on every attempt."""

    type = fields.String(required=True, validate=validate.Equal("handoff.status"))
    handoff_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(("queued", "delivered", "assigned", "failed",
                                                                   "completed")))
    at = fields.String(required=True, metadata={"description": "When the state was reached (RFC 3339, UTC)."})
    ticket = fields.Nested(CallbackTicketSchema, required=True, allow_none=True,
                           metadata={"description": "The ticket the state is about: the first made (delivered), "
                                                    "the agent's (assigned), the solved one (completed)."})
    agent = fields.Nested(CallbackAgentSchema, required=True, allow_none=True,
                          metadata={"description": "Who took it (assigned); null otherwise."})
    estimated_wait_seconds = fields.Integer(required=True, allow_none=True)
    message = fields.String(required=True, allow_none=True,
                            metadata={"description": "Ready to show the customer: the customer message (queued, "
                                                     "delivered), the apology that promises no reply (failed); "
                                                     "else null."})
    tickets = fields.List(fields.Nested(CallbackTicketSchema), required=True,
                          metadata={"description": "Every target's outcome when the state was reached."})


class HandoffListSchema(Schema):
    items = fields.List(fields.Nested(HandoffResponseSchema), required=True)


class DeliveryRowSchema(Schema):
    id = fields.Integer(required=True)
    handoff_id = fields.String(required=True)
    target = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATES))
    attempts = fields.Integer(required=True)
    # Of them, those a vendor turned away with a rate limit: not counted against CONNECTOR_MAX_ATTEMPTS.
    rate_limited = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)
    updated_at = fields.String(required=True)
    # Given up, and a later batch of messages carried this one's to the same target since: nothing
    # of it is missing there, and a replay skips it.
    carried_since = fields.Boolean(required=True)


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliveryRowSchema), required=True)
    # `GET /v1/deliveries` only: `?before=` this for the next page; null when the page was not full.
    next_before = fields.String(allow_none=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.Raw())


class WebhookReceiptSchema(Schema):
    """What the connector made of a verified vendor event (the vendor shows it in its webhook log)."""

    outcome = fields.String(required=True, validate=validate.OneOf(("recorded", "duplicate", "ignored")))
    detail = fields.String(required=True)
    handoff_id = fields.String(required=True, allow_none=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True,
                         metadata={"description": "field path → messages; empty when no field is to blame"})
