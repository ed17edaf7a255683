"""The body as it arrives: not compressed, and within CONNECTOR_MAX_BODY_BYTES when sent without a
Content-Length (chunked).

A body sent with `Content-Encoding: gzip` (several HTTP stacks compress request bodies) was read as
it came and answered 400 "not valid UTF-8": it is refused as the 415 it is, naming the header.

werkzeug refuses a declared length over the limit, but reads a chunked body only up to the limit
and stops there: the request went on with the body cut, answered 400 ("not valid JSON") or, when
signed, 401 ("mismatch") — a bot told its secret is wrong. Bot clients that stream their bodies
(Node, Go, Java, .NET) send chunked requests. So such a body is read here, before any view, and a
byte beyond the limit makes it the 413 a declared length gets (`problems._too_large`).
"""

from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import UnsupportedMediaType


def init_app(app: Flask) -> None:
    app.before_request(_not_encoded)
    app.before_request(_whole_body_within_limit)


def _not_encoded() -> None:
    # Only a request that carries a body (a health check sent with the header is answered). Not
    # `wsgi.input_terminated`: gunicorn sets it on every request.
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if any(coding.strip() not in ("", "identity") for coding in encoding.split(",")):
        raise UnsupportedMediaType(f"Send the body uncompressed: Content-Encoding {encoding!r} is not accepted "
                                   "(the body was not read).")


def _whole_body_within_limit() -> None:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is None or request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return  # a declared length is werkzeug's to check; without a terminated stream there is no body
    raw = request.get_data()  # kept by the request: the view reads the same bytes
    if len(raw) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
