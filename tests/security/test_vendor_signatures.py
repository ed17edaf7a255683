"""Webhook signature checks against known-answer vectors.

Every expected signature below is a literal: the two marked "published" come from Slack's
documentation and the Standard Webhooks reference test suite; the others were computed once with
`hmac`/`hashlib` in a throwaway snippet, never with `connector.vendor_signatures`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

import pytest

from connector.vendor_signatures import (
    REASONS,
    SignatureError,
    signed_by,
    verify_slack,
    verify_standard_webhook,
    verify_zendesk,
)

Verifier = Callable[[bytes, Mapping[str, str], Sequence[str], float], None]

T0 = 1795262400  # 2026-11-21T12:00:00Z

# --- Slack -------------------------------------------------------------------------------------
# Published: https://docs.slack.dev/authentication/verifying-requests-from-slack/
SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TS = "1531420618"
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

SLACK_SECRET = "slack-signing-secret-test-0001"
SLACK_SECRET_NEXT = "slack-signing-secret-test-0002"
SLACK_BODY = "payload=%7B%22type%22%3A%22block_actions%22%7D&note=café ☃ 日本".encode()
SLACK_SIG = "v0=951d29335e62fc90e5d21bf9c5937d4bca54811b146cf36bb4c182e3244f3301"
SLACK_SIG_NEXT = "v0=a1f9c6463fe5910dfc572aaa2421d48eea8cd0f88c443185e0cf791fb3f4c0ff"

# --- Zendesk -----------------------------------------------------------------------------------
ZENDESK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
ZENDESK_SECRET_NEXT = "zendesk-rotated-secret-0002"
ZENDESK_TS = "2026-11-21T12:00:00Z"
ZENDESK_BODY = (
    '{"type":"zen:event-type:ticket.status_changed","detail":{"id":"1001"},'
    '"event":{"current":"SOLVED","previous":"OPEN"},"note":"José – €12"}'
).encode()
ZENDESK_SIG = "crFJWUWcLDvt/c5OaqYRQ7V4KPRspa2lMGO+KUQAEYk="
ZENDESK_SIG_NEXT = "id16uWB3bvSEXX5FdOO+80MzlUXNn9i2ULHHEIwXJjU="

# --- Standard Webhooks --------------------------------------------------------------------------
# Published: the reference vector of github.com/standard-webhooks/standard-webhooks (libraries' tests).
SW_SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_SPEC_TS = "1614265330"
SW_SPEC_BODY = b'{"test": 2432232314}'
SW_SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SW_SECRET = "whsec_aGFuZG9mZi1ib3QtdGVzdC1rZXktMDAwMS0zMmJ5dGU="
SW_SECRET_NEXT = "whsec_aGFuZG9mZi1ib3QtdGVzdC1rZXktMDAwMi0zMmJ5dGU="
SW_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
SW_BODY = '{"bot":{"id":"helpbot"},"note":"Señor Müller – 日本 😀"}'.encode()
SW_SIG = "v1,JOaC4WYqX8PYqk6PvMLlb/uAb1/Qvqvn1yaDAuL5dFk="
SW_SIG_NEXT = "v1,8pi2t/XQs8W0vYy5Xvq+iXH05XSTk0OJXjbl4RqNRRI="


# Valid for every vendor (Standard Webhooks wants base64 after "whsec_"), configured for none.
OLD_SECRET = "whsec_b2xkLXNlY3JldC1uby1sb25nZXItdXNlZA=="


def slack_headers(sig: str = SLACK_SIG, ts: str = str(T0)) -> dict[str, str]:
    return {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": ts}


def zendesk_headers(sig: str = ZENDESK_SIG, ts: str = ZENDESK_TS) -> dict[str, str]:
    return {"X-Zendesk-Webhook-Signature": sig, "X-Zendesk-Webhook-Signature-Timestamp": ts}


def sw_headers(sig: str = SW_SIG, ts: str = str(T0), msg_id: str = SW_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}


# One valid request per vendor: (verifier, body, headers, secret, signature header, timestamp header)
CASES = {
    "slack": (verify_slack, SLACK_BODY, slack_headers(), SLACK_SECRET, "X-Slack-Signature",
              "X-Slack-Request-Timestamp"),
    "zendesk": (verify_zendesk, ZENDESK_BODY, zendesk_headers(), ZENDESK_SECRET, "X-Zendesk-Webhook-Signature",
                "X-Zendesk-Webhook-Signature-Timestamp"),
    "standard": (verify_standard_webhook, SW_BODY, sw_headers(), SW_SECRET, "webhook-signature",
                 "webhook-timestamp"),
}
VENDORS = sorted(CASES)


def reason_of(verify: Verifier, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(body, headers, secrets, now)
    assert caught.value.reason in REASONS
    return caught.value.reason


# --- accepted ----------------------------------------------------------------------------------

def test_slack_published_vector() -> None:
    verify_slack(SLACK_DOC_BODY, slack_headers(SLACK_DOC_SIG, SLACK_DOC_TS), [SLACK_DOC_SECRET],
                 int(SLACK_DOC_TS) + 30)


def test_standard_webhooks_published_vector() -> None:
    verify_standard_webhook(SW_SPEC_BODY, sw_headers(SW_SPEC_SIG, SW_SPEC_TS, SW_SPEC_ID), [SW_SPEC_SECRET],
                            int(SW_SPEC_TS) - 30)


@pytest.mark.parametrize("vendor", VENDORS)
def test_multibyte_body_verified_over_raw_bytes(vendor: str) -> None:
    verify, body, headers, secret, *_ = CASES[vendor]
    verify(body, headers, [secret], T0)
    # The same document re-serialized (as a framework's parsed JSON would be) is other bytes.
    if body.startswith(b"{"):
        reserialized = json.dumps(json.loads(body)).encode()
        assert reason_of(verify, reserialized, headers, [secret], T0) == "mismatch"


@pytest.mark.parametrize(
    ("verify", "body", "headers", "secret"),
    [
        (verify_slack, SLACK_BODY, slack_headers(SLACK_SIG_NEXT), SLACK_SECRET_NEXT),
        (verify_zendesk, ZENDESK_BODY, zendesk_headers(ZENDESK_SIG_NEXT), ZENDESK_SECRET_NEXT),
        (verify_standard_webhook, SW_BODY, sw_headers(SW_SIG_NEXT), SW_SECRET_NEXT),
    ],
    ids=["slack", "zendesk", "standard"],
)
def test_rotation_accepts_any_configured_secret(verify: Verifier, body: bytes, headers: dict[str, str],
                                                secret: str) -> None:
    verify(body, headers, [OLD_SECRET, secret], T0)
    verify(body, headers, [secret, OLD_SECRET], T0)
    assert reason_of(verify, body, headers, [OLD_SECRET], T0) == "mismatch"


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_header_names_are_case_insensitive(vendor: str, case: Callable[[str], str]) -> None:
    verify, body, headers, secret, *_ = CASES[vendor]
    verify(body, {case(name): value for name, value in headers.items()}, [secret], T0)


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_window_edges_are_inside(vendor: str, offset: int) -> None:
    verify, body, headers, secret, *_ = CASES[vendor]
    verify(body, headers, [secret], T0 + offset)


def test_standard_webhook_several_signatures_and_other_versions() -> None:
    header = f"v1a,c2lnbmVkLXdpdGgtZWQyNTUxOQ== v1,{'A' * 43}= {SW_SIG_NEXT} {SW_SIG}"
    verify_standard_webhook(SW_BODY, sw_headers(header), [SW_SECRET], T0)


def test_standard_webhook_skips_an_undecodable_secret_but_uses_the_others() -> None:
    verify_standard_webhook(SW_BODY, sw_headers(), ["whsec_", SW_SECRET], T0)
    assert reason_of(verify_standard_webhook, SW_BODY, sw_headers(), ["whsec_"], T0) == "no_secret_configured"


# --- refused: one reason per failure -----------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("secrets", [[], [""], ["   "]])
def test_no_secret_refuses_even_a_valid_request(vendor: str, secrets: list[str]) -> None:
    verify, body, headers, *_ = CASES[vendor]
    assert reason_of(verify, body, headers, secrets, T0) == "no_secret_configured"


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_bare_string_is_not_taken_for_a_list_of_secrets(vendor: str) -> None:
    verify, body, headers, secret, *_ = CASES[vendor]
    with pytest.raises(TypeError):
        verify(body, headers, secret, T0)  # type: ignore[arg-type]


@pytest.mark.parametrize("vendor", VENDORS)
def test_missing_headers(vendor: str) -> None:
    verify, body, headers, secret, sig_name, ts_name = CASES[vendor]
    without_sig = {k: v for k, v in headers.items() if k != sig_name}
    without_ts = {k: v for k, v in headers.items() if k != ts_name}
    assert reason_of(verify, body, without_sig, [secret], T0) == "missing_signature"
    assert reason_of(verify, body, without_ts, [secret], T0) == "missing_timestamp"
    assert reason_of(verify, body, {**headers, sig_name: "  "}, [secret], T0) == "missing_signature"


def test_standard_webhook_missing_id() -> None:
    headers = {k: v for k, v in sw_headers().items() if k != "webhook-id"}
    assert reason_of(verify_standard_webhook, SW_BODY, headers, [SW_SECRET], T0) == "missing_id"


MALFORMED_SIGNATURES = {
    "slack": ["a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "v0=xyz", "v1=" + "0" * 64,
              "v0=" + "0" * 63, "v0=" + "é" * 64],
    "zendesk": ["not base64!", "c2hvcnQ=", ZENDESK_SIG + "AAAA", "é"],
    "standard": ["g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v1,???", "v2,AAAA", "v1a,abc", "v1," + "A" * 10],
}
MALFORMED_TIMESTAMPS = {
    "slack": ["yesterday", "-1795262400", "1795262400.5", "01795262400", "１７９５２６２４００", "9" * 40],
    "zendesk": ["yesterday", "2026-11-21T12:00:00", "2026-13-01T00:00:00Z", str(T0), "２０２６-11-21T12:00:00Z"],
    "standard": ["yesterday", "-1795262400", "1795262400.5", "0x6b00", "9" * 40],
}


@pytest.mark.parametrize(("vendor", "value"), [(v, s) for v in VENDORS for s in MALFORMED_SIGNATURES[v]])
def test_malformed_signature(vendor: str, value: str) -> None:
    verify, body, headers, secret, sig_name, _ = CASES[vendor]
    assert reason_of(verify, body, {**headers, sig_name: value}, [secret], T0) == "malformed_signature"


@pytest.mark.parametrize(("vendor", "value"), [(v, s) for v in VENDORS for s in MALFORMED_TIMESTAMPS[v]])
def test_malformed_timestamp(vendor: str, value: str) -> None:
    verify, body, headers, secret, _, ts_name = CASES[vendor]
    assert reason_of(verify, body, {**headers, ts_name: value}, [secret], T0) == "malformed_timestamp"


@pytest.mark.parametrize("vendor", VENDORS)
def test_stale_and_future_timestamps(vendor: str) -> None:
    verify, body, headers, secret, *_ = CASES[vendor]
    assert reason_of(verify, body, headers, [secret], T0 + 301) == "stale_timestamp"
    assert reason_of(verify, body, headers, [secret], T0 + 86_400) == "stale_timestamp"
    assert reason_of(verify, body, headers, [secret], T0 - 301) == "future_timestamp"


@pytest.mark.parametrize("vendor", VENDORS)
def test_tampered_body_or_wrong_secret_is_a_mismatch(vendor: str) -> None:
    verify, body, headers, secret, *_ = CASES[vendor]
    assert reason_of(verify, body.replace(b"e", b"E", 1), headers, [secret], T0) == "mismatch"
    assert reason_of(verify, body + b" ", headers, [secret], T0) == "mismatch"
    assert reason_of(verify, b"", headers, [secret], T0) == "mismatch"
    assert reason_of(verify, body, headers, [OLD_SECRET], T0) == "mismatch"


def test_the_signed_timestamp_is_part_of_the_digest() -> None:
    # Same instant, written differently: Zendesk signs the header text, so this must not verify.
    headers = zendesk_headers(ts="2026-11-21T12:00:00+00:00")
    assert reason_of(verify_zendesk, ZENDESK_BODY, headers, [ZENDESK_SECRET], T0) == "mismatch"
    assert reason_of(verify_slack, SLACK_BODY, slack_headers(ts=str(T0 + 1)), [SLACK_SECRET], T0) == "mismatch"


def test_standard_webhook_id_is_part_of_the_digest_and_body_must_be_utf8() -> None:
    headers = sw_headers(msg_id=SW_ID + "x")
    assert reason_of(verify_standard_webhook, SW_BODY, headers, [SW_SECRET], T0) == "mismatch"
    assert reason_of(verify_standard_webhook, b"\xff\xfe", sw_headers(), [SW_SECRET], T0) == "malformed_body"


@pytest.mark.parametrize("vendor", VENDORS)
def test_same_header_twice_with_different_values_is_refused(vendor: str) -> None:
    verify, body, headers, secret, sig_name, _ = CASES[vendor]
    doubled = {**headers, sig_name.upper(): headers[sig_name][:-2] + "AA"}
    assert reason_of(verify, body, doubled, [secret], T0) == "malformed_signature"


@pytest.mark.parametrize("vendor", VENDORS)
def test_errors_never_carry_a_secret_or_a_digest(vendor: str) -> None:
    verify, body, headers, secret, sig_name, _ = CASES[vendor]
    with pytest.raises(SignatureError) as caught:
        verify(body + b"tampered", headers, [secret], T0)
    message = str(caught.value) + repr(caught.value) + caught.value.detail
    assert caught.value.vendor in message
    for leaked in (secret, headers[sig_name], headers[sig_name].split(",")[-1].removeprefix("v0=")):
        assert leaked not in message


def test_signed_by_names_the_signer_among_several_and_why_none_matched() -> None:
    # One pass over the headers and the body for every bot (each checked apart, a 1 MiB unsigned
    # body cost 52 ms of CPU with forty secrets): the answer must stay what checking each gave.
    bots = {"other": [SW_SPEC_SECRET], "helpbot": [SW_SECRET_NEXT, SW_SECRET], "third": [SW_SECRET_NEXT]}
    assert signed_by(SW_BODY, sw_headers(), bots, T0) == "helpbot"
    assert signed_by(SW_BODY, sw_headers(SW_SIG_NEXT), bots, T0) == "helpbot"  # the first holder of that key
    with pytest.raises(SignatureError) as caught:
        signed_by(SW_BODY + b" ", sw_headers(), bots, T0)
    assert caught.value.reason == "mismatch"
    with pytest.raises(SignatureError) as caught:
        signed_by(SW_BODY, sw_headers(), {"a": ["", "  "], "b": []}, T0)
    assert caught.value.reason == "no_secret_configured"
    with pytest.raises(SignatureError) as caught:  # a header problem is said before any secret is tried
        signed_by(SW_BODY, sw_headers(ts="later"), {"a": []}, T0)
    assert caught.value.reason == "malformed_timestamp"
