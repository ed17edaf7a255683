"""JSON written on the bot's path (`connector.json_codec`): orjson where it writes what the standard
library would mean, the standard library for everything else, and the database's JSON columns
written by it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from connector import json_codec
from tests.factories import full_packet


def test_a_packet_reads_back_as_the_same_value_with_its_keys_in_order():
    packet = full_packet()
    packet["customer"]["name"] = "Dana Ünal 🙂"
    text = json_codec.dumps(packet)
    assert json.loads(text) == packet and list(json.loads(text)) == list(packet)
    assert "Ünal 🙂" in text  # UTF-8, not escaped


@pytest.mark.parametrize("value", [
    {"big": 2**70},  # beyond orjson's 64 bits
    {"lone": "\ud800"},  # orjson refuses lone surrogates; json escapes them
    {1: "non-string key"},
])
def test_what_orjson_refuses_is_written_by_the_standard_library(value):
    assert json_codec.dumps(value) == json.dumps(value, separators=(",", ":"))


def test_what_the_standard_library_writes_is_as_compact_as_orjsons_and_utf8():
    # Escaped and spaced, a packet with a number past 64 bits measured twice its size against
    # CONNECTOR_MAX_BODY_BYTES, and its /messages were refused (a review).
    assert json_codec.dumps_bytes({"big": 2**70, "text": ["我", "🙂"]}) == \
        '{"big":1180591620717411303424,"text":["我","🙂"]}'.encode()


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [{"at": dt.datetime(2026, 12, 2, tzinfo=dt.UTC)}, {"p": Point(1)}])
def test_a_value_the_standard_library_refuses_is_still_refused(value):
    with pytest.raises(TypeError):
        json_codec.dumps(value)


def test_the_json_columns_are_written_by_it(any_db_app):
    """What the database holds is json_codec's text: UTF-8 as it is, compact (the standard
    library would write `\\u00dc` and a space after each colon)."""
    from sqlalchemy import insert, text

    from connector import driver_cursor
    from connector.models import Handoff

    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    row = dict(id="hnd_codec", bot_id="b", conversation_id="c", idempotency_key="k", request_hash="0" * 64,
               message_id=None, packet={"name": "Ünal"}, assignment={}, customer_message={},
               estimated_wait_seconds=None, created_at=now, updated_at=now)
    db = any_db_app.extensions["connector"].db
    with db.statements() as connection:
        driver_cursor.run(connection, insert(Handoff.__table__), row)
    with db.engine.connect() as connection:
        stored = connection.execute(text("SELECT CAST(packet AS TEXT) FROM handoffs WHERE id = 'hnd_codec'")).scalar()
    assert stored == json_codec.dumps({"name": "Ünal"}) == '{"name":"Ünal"}'


def _flask_pair(debug: bool = False):
    from flask import Flask
    from flask.json.provider import DefaultJSONProvider

    ours, flasks = Flask("ours"), Flask("flasks")
    ours.json = json_codec.JSONProvider(ours)
    for app in (ours, flasks):
        app.debug = debug
        app.json.sort_keys = False
        app.json.ensure_ascii = False
    assert type(flasks.json) is DefaultJSONProvider
    return ours, flasks


@pytest.mark.parametrize("value", [
    {"status": "delivered", "customer_message": {"text": "Merci — un collègue arrive 🙂"}, "wait": 1.5,
     "targets": [{"id": 2**40, "ok": True, "none": None}]},
    {"at": dt.datetime(2026, 12, 2, 17, 0, tzinfo=dt.UTC)},  # Flask's own (an HTTP date)
    {"big": 2**70}, {"p": Point(1)},
])
@pytest.mark.parametrize("debug", [False, True])
def test_answers_read_the_same_as_flasks_own_json(value, debug):
    ours, flasks = _flask_pair(debug)
    with ours.app_context():
        mine = ours.json.response(value).get_data(), ours.json.dumps(value)
    with flasks.app_context():
        theirs = flasks.json.response(value).get_data(), flasks.json.dumps(value)
    assert mine == theirs  # the answer, and a call without options (Flask's spaced separators)


def test_the_app_answers_through_orjson(monkeypatch):
    from connector import create_app

    encoded = []
    real = json_codec.orjson.dumps
    monkeypatch.setattr(json_codec.orjson, "dumps", lambda *a, **k: encoded.append(a[0]) or real(*a, **k))
    app = create_app({"environ": {}})
    with app.app_context():
        assert app.json.response({"b": 1, "a": "é"}).get_data() == '{"b":1,"a":"é"}\n'.encode()
    assert encoded == [{"b": 1, "a": "é"}]
