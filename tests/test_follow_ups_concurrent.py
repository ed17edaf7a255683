"""Batches of messages posted for one handoff at the same moment each take the next place: none is
refused for the others (five tries at once answered 503 to four of ten: an idempotency review)."""

from __future__ import annotations

import json
import threading

from sqlalchemy import select

from connector.models import Handoff
from tests.conftest import auth
from tests.factories import minimal_packet


def test_batches_posted_together_are_all_stored_each_in_its_own_place(any_db_app):
    app = any_db_app
    client = app.test_client()
    handoff_id = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                             content_type="application/json").get_json()["id"]
    together = 8
    start, codes = threading.Barrier(together), []

    def send(n: int) -> None:
        said = {"messages": [{"at": f"2026-11-20T10:05:{n:02d}Z", "role": "customer", "text": f"line {n}"}]}
        own = app.test_client()
        start.wait()
        codes.append(own.post(f"/v1/handoffs/{handoff_id}/messages", data=json.dumps(said),
                              headers={**auth(), "Idempotency-Key": f"line-{n}"},
                              content_type="application/json").status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(together)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == sorted(code for code in codes if code in (201, 202)) and len(codes) == together, codes
    with app.extensions["connector"].db.reading() as session:
        places = session.scalars(select(Handoff.follow_up_seq).where(Handoff.follows_id == handoff_id)).all()
    assert sorted(places) == list(range(1, together + 1))
