"""marshmallow schemas: the handoff packet (input) and every response body (output).

The OpenAPI document is generated from these same classes, so they are the one description of the API.
"""

from .packet import Limits, MessagesSchema, PacketSchema, flatten_errors
from .responses import (
    DeliveryListSchema,
    HandoffDetailSchema,
    HandoffListSchema,
    HandoffResponseSchema,
    HandoffStatusSchema,
    HealthSchema,
    MessagesListSchema,
    MessagesResponseSchema,
    ProblemSchema,
    WebhookReceiptSchema,
)

__all__ = [
    "DeliveryListSchema",
    "HandoffDetailSchema",
    "HandoffListSchema",
    "HandoffResponseSchema",
    "HandoffStatusSchema",
    "HealthSchema",
    "Limits",
    "MessagesListSchema",
    "MessagesResponseSchema",
    "MessagesSchema",
    "PacketSchema",
    "ProblemSchema",
    "WebhookReceiptSchema",
    "flatten_errors",
]
