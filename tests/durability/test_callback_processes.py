"""Status callbacks sent by several processes sharing PostgreSQL: each state reaches the bot, signed,
once when nothing dies; a process killed while sending leaves them to the others."""

from __future__ import annotations

import base64
import signal
from collections import Counter

import pytest
from standardwebhooks.webhooks import Webhook

from tests.durability.conftest import post_handoffs, wait_until
from tests.fakes.bot import FakeBot

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = "whsec_" + base64.b64encode(b"durable-callbacks-secret-000000!").decode()


def test_callbacks_from_several_processes_reach_the_bot_once_each(processes, vendors, db):
    with FakeBot() as bot:
        for _ in range(15):  # the bot stumbles at first: retried, by whichever process claims them next
            bot.answer(503)
        env = {"CONNECTOR_BOT_SECRETS": f"support-bot:{SECRET}", "CONNECTOR_CALLBACK_ALLOW_PRIVATE": "1"}
        webs = [processes.web(**env), processes.web(**env)]
        processes.worker(**env)
        ids = post_handoffs([web.url for web in webs], 60, "cb",
                            extra={"callback": {"url": bot.url, "events": ["queued", "delivered"]}})
        wait_until(lambda: db.rows("SELECT count(*) FROM callbacks WHERE status = 'sent'")[0][0] == 120, 60,
                   f"every callback to be sent ({db.rows('SELECT status, count(*) FROM callbacks GROUP BY status')})",
                   0.2)
        accepted = [r for r in bot.requests[15:]]
        assert Counter((r.json["handoff_id"], r.json["state"]) for r in accepted) == Counter(
            {(hid, state): 1 for hid in ids for state in ("queued", "delivered")})
        for received in accepted:
            assert Webhook(SECRET).verify(received.body, received.headers) == received.json
        assert len(bot.requests) == 135  # the 15 refused, then each once


def test_callbacks_held_by_a_killed_process_are_sent_by_another(processes, vendors, db):
    with FakeBot() as bot:
        env = {"CONNECTOR_BOT_SECRETS": f"support-bot:{SECRET}", "CONNECTOR_CALLBACK_ALLOW_PRIVATE": "1",
               "CONNECTOR_LEASE_S": "2", "CONNECTOR_CALLBACK_TIMEOUT_S": "2"}
        hung = [bot.hang() for _ in range(4)]  # the web process's four callback threads wait on the bot
        web = processes.web(**env)  # it reaches the states, so it sends their callbacks at once
        ids = post_handoffs([web.url], 4, "kill", extra={"callback": {"url": bot.url, "events": ["delivered"]}})
        wait_until(lambda: len(bot.requests) == 4, 30, "the web process to be sending all four")
        processes.signal(web, signal.SIGKILL)
        web.popen.wait(timeout=10)
        for event in hung:
            event.set()
        processes.worker(**env)
        # Their leases (2 × the timeout + 10 s) expire; then the worker takes them over.
        wait_until(lambda: db.rows("SELECT count(*) FROM callbacks WHERE status = 'sent'")[0][0] == 4, 40,
                   "the held callbacks to be sent by the worker", 0.2)
        assert sorted(r.json["handoff_id"] for r in bot.requests[4:]) == sorted(ids)
