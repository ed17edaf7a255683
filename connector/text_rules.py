"""Text the connector can store and send, wherever it comes from (packets, vendor events).

`"\\u0000"` and `"\\ud800"` are valid JSON, yet PostgreSQL text refuses NUL, and a lone surrogate
cannot be encoded as UTF-8 (for the answer, a vendor or the log): such text is refused on arrival.
"""

from __future__ import annotations

import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
