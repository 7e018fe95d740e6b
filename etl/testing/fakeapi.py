"""A real HTTP server that speaks the Katapult API for VM packages (tests and the offline demo)."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from .catalogue import public_catalogue, synthetic_catalogue

READ_SCOPE = "virtual_machine_packages:read"
DEFAULT_TOKEN = "tok_good"
CORE_PATH = "/core/v1/virtual_machine_packages"
PUBLIC_PATH = "/public/v1/virtual_machine_packages"
DEFAULT_PER_PAGE = 30
# How a page states its totals: as Katapult counts them, as nulls, or left out (Katapult's framework
# leaves out the keys a field spec excludes).
TOTALS_STYLES = ("counted", "null", "absent")
_INTEGER = re.compile(r"-?[0-9]+")

# code -> (HTTP status, description), worded as Katapult's API answered where its answers were recorded
# (Katapult's Terraform provider and Go client test recordings, 2021-2026: missing_api_token,
# invalid_api_token, permission_denied, organization_not_found, route_not_found, invalid_argument, and
# 500 unhandled_exception, whose description is null). The four 403s after permission_denied are the
# ones Katapult documents for this endpoint without a recorded answer: their codes are Katapult's, their
# descriptions written in its style.
ERRORS: dict[str, tuple[int, str | None]] = {
    "missing_api_token": (
        400,
        "No API token was provided in the Authorization header. Ensure a token is provided prefixed with Bearer",
    ),
    "invalid_api_token": (403, "The API token provided was not valid (it may not exist or have expired)"),
    "permission_denied": (403, "The authenticated identity is not permitted to perform this action"),
    "unauthorized_network_for_api_token": (403, "Network is not allowed to access the API with this API token"),
    "invalid_capabilities_token": (403, "The capabilities token provided was not valid"),
    "organization_suspended": (403, "The organization is suspended and cannot be used"),
    "organization_not_activated": (403, "The organization has not been activated yet"),
    "scope_not_granted": (403, "The scope required for this action has not been granted to the API token"),
    "organization_not_found": (404, "No organization was found matching any of the criteria provided in the arguments"),
    "invalid_argument": (400, "The argument provided is invalid"),
    "route_not_found": (404, "No route matches the path and method provided"),
    "method_not_allowed": (405, "The HTTP method used is not supported for this route"),
    "rate_limit_reached": (429, "You have reached the rate limit for this type of request"),
    "unhandled_exception": (500, None),
    "internal_server_error": (500, "An internal server error occurred while processing this request"),
    "bad_gateway": (502, "The upstream service returned an invalid response"),
    "service_unavailable": (503, "The service is temporarily unavailable, please try again later"),
    "gateway_timeout": (504, "The upstream service did not respond in time"),
}
# Used when a Fault gives only an error status: the body still looks like a Katapult error.
_CODE_FOR_STATUS = {
    400: "invalid_argument",
    403: "invalid_api_token",
    404: "route_not_found",
    405: "method_not_allowed",
    429: "rate_limit_reached",
    500: "unhandled_exception",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@dataclass
class Fault:
    """One scripted misbehaviour, used for the next matching request instead of the normal answer."""

    status: int = 200  # with only error_code set, that code's usual status is sent instead
    body: bytes | None = None  # raw bytes; None: error body for error_code/status >= 400, else normal body
    error_code: str | None = None  # e.g. "rate_limit_reached": a Katapult error body with its description
    headers: dict[str, str] = field(default_factory=dict)  # extra or overriding headers, e.g. Retry-After
    delay: float = 0.0  # seconds to sleep before answering, to trigger client read timeouts
    truncate_body: bool = False  # full Content-Length, half the body, then the connection is closed
    trickle: float = 0.0  # seconds between the body's bytes, sent one at a time (until the client hangs up)
    page: int | None = None  # only match requests for this page (absent page counts as 1); None: any


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class ApiError(Exception):
    """An error answer: raised anywhere while routing, turned into a Katapult error body."""

    def __init__(
        self, code: str, description: str | None = None, detail: dict[str, Any] | None = None, status: int | None = None
    ):
        known_status, known_description = ERRORS.get(code, (500, f"An error occurred ({code})"))
        super().__init__(code)
        self.code = code
        self.status = status or known_status
        self.description = known_description if description is None else description
        self.detail = detail or {}

    def body(self) -> bytes:
        """The JSON error body."""
        error = {"code": self.code, "description": self.description, "detail": self.detail}
        return json.dumps({"error": error}).encode()


def _error_schema(status: int) -> dict[str, str]:
    """Katapult marks every error body it sends with this header."""
    return {"X-Api-Schema": "json-error"} if status >= 400 else {}


def _invalid_argument(name: str, issue: str, value: str | None) -> ApiError:
    """invalid_argument naming the offending parameter."""
    detail = {"argument": name, "path": [name], "issue": issue, "value": value}
    return ApiError("invalid_argument", f"The '{name}' argument is invalid", detail)


def _int_arg(query: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    """A whole-number query parameter within [low, high], or invalid_argument."""
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise _invalid_argument(name, "must be an integer", raw)
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _invalid_argument(name, f"must be {bound}", raw)
    return value


def _request_page(query: dict[str, str]) -> int | None:
    """The page a request asks for (1 when absent, None when unparseable), for fault matching."""
    raw = query.get("page", "1")
    return int(raw) if _INTEGER.fullmatch(raw) else None


_Item = TypeVar("_Item")


def _slice_two(first: list[_Item], second: list[_Item], start: int, stop: int) -> list[_Item]:
    """first + second, sliced, without copying 100k-item lists on every request."""
    if stop <= len(first):
        return first[start:stop]
    offset = len(first)
    return first[start:] + second[max(0, start - offset) : stop - offset]


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that stays quiet and remembers its FakeKatapult."""

    daemon_threads = True
    fake: FakeKatapult

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-answer (timeouts, truncation tests) are expected: say nothing."""


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the FakeKatapult that owns the server."""

    protocol_version = "HTTP/1.1"  # keep-alive, so requests.Session reuses the connection
    server_version = "FakeKatapult/1.0"
    disable_nagle_algorithm = True  # headers and body go out in two writes; avoid 40 ms ACK stalls
    server: _Server

    def setup(self) -> None:
        """Track the connection so stop() can close idle keep-alive sockets."""
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        """Forget the connection."""
        self.server.fake._track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Tests and the demo want a silent server."""

    def _any(self) -> None:
        """Every method goes through the same dispatcher."""
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any


class FakeKatapult:
    """In-process Katapult API for VM packages, served over real HTTP on a daemon thread."""

    def __init__(
        self,
        packages: list[dict[str, Any]] | None = None,
        *,
        tokens: dict[str, set[str]] | None = None,
        organizations: dict[str, dict[str, Any]] | None = None,
        per_page_cap: int = 200,
        large_set_threshold: int = 1000,
        latency: float = 0.0,
        rate_limit_permitted: int = 600,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.packages: list[dict[str, Any]] = public_catalogue() if packages is None else packages
        self.tokens: dict[str, set[str]] = {DEFAULT_TOKEN: {READ_SCOPE}} if tokens is None else tokens
        self.organizations: dict[str, dict[str, Any]] = {} if organizations is None else organizations
        self.per_page_cap = per_page_cap
        self.large_set_threshold = large_set_threshold
        self.force_large_set = False
        self.totals = "counted"  # one of TOTALS_STYLES; "null" and "absent" apply to a set with totals
        self.omit_large_set = False  # leave the large_set key out of the pagination block
        self.latency = latency
        self.rate_limit_permitted = rate_limit_permitted
        self.requests: list[RecordedRequest] = []
        self.on_request: Callable[[int], None] | None = None
        # Called with the page's number once its body is built, before it is sent: a change made there
        # is one the client can only see in the answers to its later requests.
        self.after_page: Callable[[int], None] | None = None
        # Called with every request, fault or not, before it is answered (lets tests move a fake clock).
        self.on_answer: Callable[[RecordedRequest], None] | None = None
        self.host, self.port = host, port
        self.url = ""
        self._faults: list[Fault] = []
        self._used = 0  # requests counted against the rate limit
        # Whether an answer of this minute has already said X-Ratelimit-Remaining: 0. A 429 after that is
        # one the client could have avoided by waiting for the next minute: counted in avoidable_429s.
        self._told_spent = False
        self.avoidable_429s = 0
        self._in_flight = 0
        self.peak_in_flight = 0  # the most requests the server was answering at one time
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> FakeKatapult:
        """Bind, start serving on a daemon thread, and set `url`."""
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name=f"fakeapi-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and any open connections, join the thread."""
        if self._server is None or self._thread is None:  # never started (start() sets both)
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive handlers would otherwise outlive the server
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeKatapult:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls -----------------------------------------------------

    def add_fault(self, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` matching requests (FIFO)."""
        with self._lock:
            self._faults.extend([fault] * times)

    def remove_after_page(self, page: int, package_id: str) -> None:
        """Delete one package from the catalogue right after page `page` is first served (once)."""
        done = False

        def remove(served: int) -> None:
            nonlocal done
            if served == page and not done:
                done = True
                self.packages = [package for package in self.packages if package["id"] != package_id]

        self.after_page = remove

    def reset_rate_limit(self, used: int = 0) -> None:
        """Count requests against the rate limit from `used` (0: a fresh minute) again."""
        with self._lock:
            self._used = used
            self._told_spent = False

    def _track(self, conn: socket.socket, add: bool) -> None:
        """Remember or forget an open client connection."""
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # --- request handling --------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        """Answer one request, counting the requests being answered at the same time."""
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            self._answer(handler)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, handler: _Handler) -> None:
        """Record, count, then answer with the queued fault or the normal response."""
        self._drain_body(handler)
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        recorded = RecordedRequest(handler.command, split.path, query, dict(handler.headers.items()))
        with self._lock:
            self.requests.append(recorded)
            self._used += 1
            over_limit = self._used > self.rate_limit_permitted
            remaining = max(0, self.rate_limit_permitted - self._used)
            fault = self._take_fault(_request_page(query))
            if over_limit and fault is None and self._told_spent:
                self.avoidable_429s += 1
            self._told_spent = self._told_spent or remaining == 0
        headers = {"X-Ratelimit-Permitted": str(self.rate_limit_permitted), "X-Ratelimit-Remaining": str(remaining)}
        if self.latency:
            time.sleep(self.latency)
        if self.on_answer is not None:
            self.on_answer(recorded)
        if fault is not None:
            self._apply_fault(handler, fault, recorded, headers)
            return
        status, body = self._respond(recorded, over_limit)
        self._send(handler, status, body, {**headers, **_error_schema(status)})

    def _take_fault(self, page: int | None) -> Fault | None:
        """Pop the head of the fault queue if it matches this page (caller holds the lock)."""
        if self._faults and self._faults[0].page in (None, page):
            return self._faults.pop(0)
        return None

    @staticmethod
    def _drain_body(handler: _Handler) -> None:
        """Read any request body so the next request on a keep-alive connection starts clean."""
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)

    def _respond(self, req: RecordedRequest, over_limit: bool = False) -> tuple[int, bytes]:
        """The normal (status, body) for a request."""
        try:
            return 200, self._route(req, over_limit)
        except ApiError as error:
            return error.status, error.body()

    def _route(self, req: RecordedRequest, over_limit: bool) -> bytes:
        """Dispatch on path and method; raise ApiError for anything that is not a 200."""
        if req.path not in (CORE_PATH, PUBLIC_PATH):
            raise ApiError("route_not_found", f"No route matches '{req.path}' for {req.method}")
        if req.method != "GET":
            raise ApiError("method_not_allowed", f"The {req.method} method is not supported for '{req.path}'")
        if over_limit:
            raise self._error("rate_limit_reached")
        if req.path == PUBLIC_PATH:
            return self._page_body(req.query, "packages", self.packages, [])
        token = self._authenticate(req.headers)
        extra = self._organization_packages(req.query, token)
        return self._page_body(req.query, "virtual_machine_packages", self.packages, extra)

    def _authenticate(self, headers: dict[str, str]) -> str:
        """Bearer token with the read scope (returned), or the matching Katapult error."""
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError("missing_api_token")
        scopes = self.tokens.get(auth[7:].strip())
        if scopes is None:
            raise ApiError("invalid_api_token")
        if READ_SCOPE not in scopes:
            raise ApiError("scope_not_granted", detail={"scopes": [READ_SCOPE]})
        return auth[7:].strip()

    def _organization_packages(self, query: dict[str, str], token: str) -> list[dict[str, Any]]:
        """The private packages of the organization named in the query ([] when none is named). An
        organization with a "tokens" set lets only those tokens in: any other is permission_denied."""
        org_id, sub_domain = query.get("organization[id]"), query.get("organization[sub_domain]")
        if org_id is not None and sub_domain is not None:
            raise _invalid_argument("organization", "only one of id or sub_domain may be provided", None)
        if org_id is None and sub_domain is None:
            return []
        for key, org in self.organizations.items():
            if key == org_id or (sub_domain is not None and org.get("sub_domain") == sub_domain):
                if "tokens" in org and token not in org["tokens"]:
                    raise ApiError("permission_denied")
                packages: list[dict[str, Any]] = org.get("packages", [])
                return packages
        raise ApiError("organization_not_found")

    def _page_body(
        self, query: dict[str, str], key: str, items: list[dict[str, Any]], extra: list[dict[str, Any]]
    ) -> bytes:
        """One page of items + extra with Katapult's pagination block."""
        page = _int_arg(query, "page", 1, 1, None)
        per_page = _int_arg(query, "per_page", DEFAULT_PER_PAGE, 1, self.per_page_cap)
        if self.on_request is not None:
            self.on_request(page)  # lets tests change the catalogue mid-walk
        total = len(items) + len(extra)
        large = self.force_large_set or total > self.large_set_threshold
        start = (page - 1) * per_page
        pagination = {
            "current_page": page,
            "total_pages": None if large else -(-total // per_page),
            "total": None if large else total,
            "per_page": per_page,
            "large_set": large,
        }
        self._restyle_totals(pagination)
        chunk = _slice_two(items, extra, start, start + per_page)
        body = json.dumps({"pagination": pagination, key: chunk}).encode()
        if self.after_page is not None:
            self.after_page(page)
        return body

    def _restyle_totals(self, pagination: dict[str, Any]) -> None:
        """Totals as `totals` and `omit_large_set` say they are sent."""
        if self.totals == "null":
            pagination.update(total=None, total_pages=None)
        elif self.totals == "absent":
            del pagination["total"], pagination["total_pages"]
        if self.omit_large_set:
            del pagination["large_set"]

    def _apply_fault(self, handler: _Handler, fault: Fault, req: RecordedRequest, headers: dict[str, str]) -> None:
        """Answer a request the way `fault` scripts it."""
        if fault.delay:
            time.sleep(fault.delay)
        status = fault.status
        if fault.error_code and status == 200:  # a bare error_code implies its usual status
            status = ERRORS.get(fault.error_code, (500, ""))[0]
        body = self._fault_body(fault, status, req)
        if fault.body is None:  # a Katapult error body (a fault's own bytes are some proxy's page)
            headers = {**headers, **_error_schema(status)}
        self._send(
            handler, status, body, {**headers, **fault.headers}, truncate=fault.truncate_body, trickle=fault.trickle
        )

    def _fault_body(self, fault: Fault, status: int, req: RecordedRequest) -> bytes:
        """The fault's own bytes, else a Katapult error body for error statuses, else the normal body."""
        if fault.body is not None:
            return fault.body
        code = fault.error_code
        if code is None and status >= 400:
            code = _CODE_FOR_STATUS.get(status, "unhandled_exception")
        if code is None:
            return self._respond(req)[1]
        return self._error(code, status).body()

    def _error(self, code: str, status: int | None = None) -> ApiError:
        """An ApiError with the detail the real API attaches to that code."""
        detail = {"total_permitted": self.rate_limit_permitted} if code == "rate_limit_reached" else None
        return ApiError(code, detail=detail, status=status)

    @staticmethod
    def _send(
        handler: _Handler,
        status: int,
        body: bytes,
        headers: dict[str, str],
        truncate: bool = False,
        trickle: float = 0.0,
    ) -> None:
        """Write status, headers and body; with truncate, only half the body, then hang up; with
        trickle, one byte at a time."""
        handler.send_response(status)
        merged = {"Content-Type": "application/json", **headers, "Content-Length": str(len(body))}
        for name, value in merged.items():
            handler.send_header(name, value)
        handler.end_headers()
        if trickle:
            _trickle(handler, body, trickle)
            return
        if not truncate:
            handler.wfile.write(body)
            return
        handler.wfile.write(body[: len(body) // 2])
        handler.close_connection = True
        # A FIN before Content-Length bytes arrive: the client sees an incomplete body.
        handler.connection.shutdown(socket.SHUT_RDWR)


def _trickle(handler: _Handler, body: bytes, interval: float) -> None:
    """Send `body` a byte every `interval` seconds; stop when the client has hung up."""
    handler.wfile.flush()
    for index in range(len(body)):
        try:
            handler.wfile.write(body[index : index + 1])
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
            return
        time.sleep(interval)


def main(argv: list[str] | None = None) -> None:
    """Serve a fake Katapult until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a fake Katapult VM packages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--packages", type=int, default=None, help="serve N synthetic packages instead of the real public catalogue"
    )
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="API token to accept")
    args = parser.parse_args(argv)
    packages = None if args.packages is None else synthetic_catalogue(args.packages)
    fake = FakeKatapult(packages, tokens={args.token: {READ_SCOPE}}, host=args.host, port=args.port)
    fake.start()
    print(f"Fake Katapult API at {fake.url} (token: {args.token}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
