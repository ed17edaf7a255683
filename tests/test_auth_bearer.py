"""Bots authenticate with per-bot bearer keys; without configured credentials everything is refused."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BOT_KEY, OTHER_KEY, auth
from tests.factories import minimal_packet


def post(client, headers, packet=None):
    return client.post("/v1/handoffs", data=json.dumps(packet or minimal_packet()), headers=headers,
                       content_type="application/json")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Basic {BOT_KEY}"},
    {"Authorization": "Bearer "},
    {"Authorization": BOT_KEY},
])
def test_missing_or_wrong_key_is_401(client, headers):
    response = post(client, headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert BOT_KEY not in response.get_data(as_text=True)


def test_no_credentials_configured_refuses_everything(make_app):
    client = make_app(bot_keys=()).test_client()
    response = post(client, auth())
    assert response.status_code == 401
    assert "CONNECTOR_BOT_KEYS" in response.get_json()["detail"]
    assert client.get("/v1/handoffs?conversation_id=x").status_code == 401


def test_explicit_development_switch_accepts_unauthenticated(make_app):
    client = make_app(bot_keys=(), allow_unauthenticated=True).test_client()
    assert post(client, {}).status_code == 201


def test_a_bot_cannot_act_as_another(client):
    response = post(client, auth(OTHER_KEY))  # the packet says support-bot
    assert response.status_code == 403 and "bot.id" in response.get_json()["errors"]


def test_bot_keys_setting_parses_pairs_and_names_the_variable():
    from connector.errors import ConfigError
    from connector.settings import Settings

    settings = Settings.from_env({"CONNECTOR_BOT_KEYS": "a:k1, b:k2,a:k3"})
    assert settings.bot_keys == (("a", "k1"), ("b", "k2"), ("a", "k3"))
    with pytest.raises(ConfigError, match="CONNECTOR_BOT_KEYS"):
        Settings.from_env({"CONNECTOR_BOT_KEYS": "missing-colon"})
