"""marshmallow schemas: the handoff packet (input) and every response body (output).

The OpenAPI document is generated from these same classes, so they are the one description of the API.
"""

from .packet import Limits, PacketSchema, flatten_errors
from .responses import (
    DeliveryListSchema,
    HandoffDetailSchema,
    HandoffListSchema,
    HandoffResponseSchema,
    HandoffStatusSchema,
    HealthSchema,
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
    "PacketSchema",
    "ProblemSchema",
    "WebhookReceiptSchema",
    "flatten_errors",
]
