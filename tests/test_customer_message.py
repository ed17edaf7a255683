"""What the customer is told: acknowledgment, no repeating, the problem, an expectation — per locale."""

from __future__ import annotations

import pytest

from connector.customer_message import compose
from connector.mappings import load_file
from tests.factories import full_packet

MESSAGES = load_file(__import__("pathlib").Path(__file__).parents[1] / "mappings" / "messages.yaml")
ASSIGNMENT = {"team": "billing"}


@pytest.mark.parametrize(("language", "locale", "phrases"), [
    ("en", "en", ["connecting you", "won't need to repeat", "billing"]),
    ("es-MX", "es", ["conectando", "no tendrás que repetir", "facturación"]),
    ("fr-CA", "fr", ["mets en relation", "pas à vous répéter", "facturation"]),
    ("de", "de", ["verbinde", "nichts wiederholen", "Abrechnungs"]),
    ("pt-BR", "en", ["connecting you"]),
    (None, "en", ["connecting you"]),
])
def test_each_locale_and_fallback(language, locale, phrases):
    packet = full_packet()
    packet["conversation"]["language"] = language
    message = compose(packet, ASSIGNMENT, None, MESSAGES)
    assert message["locale"] == locale
    for phrase in phrases:
        assert phrase in message["text"]
    assert "Invoices stopped syncing to QuickBooks" in message["text"]


def test_a_known_wait_is_quoted_and_an_unknown_one_is_not_invented():
    assert "about 4 minutes" in compose(full_packet(), ASSIGNMENT, 240, MESSAGES)["text"]
    assert "about 1 minute." in compose(full_packet(), ASSIGNMENT, 30, MESSAGES)["text"]
    text = compose(full_packet(), ASSIGNMENT, None, MESSAGES)["text"]
    assert "minute" not in text and "as soon as" in text


def test_customer_text_is_not_a_template():
    packet = full_packet()
    packet["intent"]["stated_problem"] = "{{ 7*7 }} {{ ''.__class__.__mro__ }}"
    text = compose(packet, ASSIGNMENT, None, MESSAGES)["text"]
    assert "{{ 7*7 }}" in text and "49" not in text
