"""A vendor down for longer than the retry window: deliveries go `dead`, operators see them in
/readyz, and a replay (CLI or admin API) delivers each exactly once — also those whose last attempt
timed out after the vendor had acted."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.durability.conftest import assert_exactly_once, http, post_handoffs, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_dead_deliveries_replayed_once_the_vendor_is_back(processes, vendors, db):
    # Every call acts, then stalls past the client timeout: the vendor did the work, we never know.
    vendors.configure(failure_rate=1.0, failures={"timeout": 1}, stall_s=1.3)
    web = processes.web(CONNECTOR_MAX_ATTEMPTS="2", CONNECTOR_DELIVERY_THREADS="16")
    ids = post_handoffs([web.url], 20, "dead")
    wait_until(lambda: db.states() == {"dead": 60}, 60, f"every delivery to go dead ({db.states()})", 0.5)
    unknown = db.rows("SELECT target, count(*) FROM deliveries WHERE outcome_unknown GROUP BY target")
    assert dict(unknown).get("zendesk") == 20 and dict(unknown).get("slack") == 20, unknown
    # The vendors acted before timing out: tickets and alerts exist, unknown to the connector.
    acted = vendors.counts()
    assert len(acted["zendesk"]) == 20 and len(acted["slack"]) == 20, acted
    status, _, body = http("GET", web.url + "/readyz")
    assert status == 200
    assert {t: c["dead"] for t, c in body["checks"]["deliveries"].items()} == \
        {"zendesk": 20, "salesforce": 20, "slack": 20}, body

    vendors.configure(failure_rate=0.0)
    result = processes.cli("replay", "--all-dead", "--target", "zendesk")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("replayed 20"), result.stdout
    status, _, body = http("POST", web.url + "/v1/deliveries/retry", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 202 and len(body["replayed"]) == 40, body
    wait_until(lambda: db.unfinished() == 0, 60, f"the replayed deliveries ({db.states()})", 0.5)
    assert db.states() == {"created": 60}
    assert_exactly_once(vendors, ids)
    listed = processes.cli("deliveries", "--state", "dead")
    assert listed.returncode == 0 and listed.stdout == "", listed.stdout
    status, _, body = http("GET", web.url + "/readyz")
    assert all(c["dead"] == 0 for c in body["checks"]["deliveries"].values()), body
