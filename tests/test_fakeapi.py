"""The fake Katapult server itself, exercised over real HTTP with requests."""

from __future__ import annotations

import http.client
import time

import pytest
import requests

from etl.testing.catalogue import public_catalogue, synthetic_catalogue
from etl.testing.fakeapi import CORE_PATH, PUBLIC_PATH, READ_SCOPE, FakeKatapult, Fault

TOKEN = "tok_good"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# As Katapult's API words them in recorded answers.
MISSING_TOKEN = "No API token was provided in the Authorization header. Ensure a token is provided prefixed with Bearer"
INVALID_TOKEN = "The API token provided was not valid (it may not exist or have expired)"
SCOPE_NOT_GRANTED = "The scope required for this action has not been granted to the API token"
ORG_NOT_FOUND = "No organization was found matching any of the criteria provided in the arguments"
RATE_LIMITED = "You have reached the rate limit for this type of request"


@pytest.fixture
def serve():
    """Start FakeKatapult servers with the given arguments; stop them all afterwards."""
    started = []

    def start(*args, **kwargs) -> FakeKatapult:
        fake = FakeKatapult(*args, **kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def fake(serve) -> FakeKatapult:
    """The default server: the real public catalogue, token tok_good."""
    return serve()


@pytest.fixture
def session():
    """A requests session (keep-alive), closed afterwards."""
    with requests.Session() as s:
        yield s


def core(fake, session, headers=AUTH, **params) -> requests.Response:
    """GET the authenticated VM packages list."""
    return session.get(fake.url + CORE_PATH, params=params, headers=headers, timeout=5)


def error_of(response: requests.Response) -> dict:
    """The {"code", "description", "detail"} of a Katapult error response."""
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Api-Schema"] == "json-error"
    body = response.json()
    assert list(body) == ["error"]
    assert list(body["error"]) == ["code", "description", "detail"]
    return body["error"]


# --- pagination -------------------------------------------------------------


def test_default_catalogue_is_the_public_one_in_one_default_page(fake, session):
    response = core(fake, session)
    assert response.status_code == 200
    assert response.json() == {
        "pagination": {"current_page": 1, "total_pages": 1, "total": 20, "per_page": 30, "large_set": False},
        "virtual_machine_packages": public_catalogue(),
    }


def test_pagination_totals_and_short_last_page(serve, session):
    catalogue = synthetic_catalogue(45)
    fake = serve(catalogue)
    pages = [core(fake, session, page=n, per_page=20).json() for n in (1, 2, 3)]
    assert [p["pagination"] for p in pages] == [
        {"current_page": n, "total_pages": 3, "total": 45, "per_page": 20, "large_set": False} for n in (1, 2, 3)
    ]
    assert [len(p["virtual_machine_packages"]) for p in pages] == [20, 20, 5]
    walked = [pkg for p in pages for pkg in p["virtual_machine_packages"]]
    assert walked == catalogue


def test_page_past_the_end_is_an_empty_200(serve, session):
    fake = serve(synthetic_catalogue(45))
    response = core(fake, session, page=4, per_page=20)
    assert response.status_code == 200
    assert response.json() == {
        "pagination": {"current_page": 4, "total_pages": 3, "total": 45, "per_page": 20, "large_set": False},
        "virtual_machine_packages": [],
    }


def test_empty_set_has_zero_pages(serve, session):
    fake = serve([])
    assert core(fake, session).json() == {
        "pagination": {"current_page": 1, "total_pages": 0, "total": 0, "per_page": 30, "large_set": False},
        "virtual_machine_packages": [],
    }


def test_large_set_hides_totals_above_the_threshold(serve, session):
    fake = serve(synthetic_catalogue(1001))
    body = core(fake, session, page=6, per_page=200).json()
    assert body["pagination"] == {
        "current_page": 6,
        "total_pages": None,
        "total": None,
        "per_page": 200,
        "large_set": True,
    }
    assert [p["name"] for p in body["virtual_machine_packages"]] == ["PKG-01001"]


def test_threshold_itself_is_not_a_large_set(serve, session):
    fake = serve(synthetic_catalogue(1000))
    pagination = core(fake, session, per_page=200).json()["pagination"]
    assert (pagination["total"], pagination["total_pages"], pagination["large_set"]) == (1000, 5, False)


def test_force_large_set(fake, session):
    fake.force_large_set = True
    pagination = core(fake, session).json()["pagination"]
    assert pagination == {"current_page": 1, "total_pages": None, "total": None, "per_page": 30, "large_set": True}


@pytest.mark.parametrize(
    "params, argument, value, issue",
    [
        ({"per_page": "201"}, "per_page", "201", "must be between 1 and 200"),
        ({"per_page": "0"}, "per_page", "0", "must be between 1 and 200"),
        ({"per_page": "ten"}, "per_page", "ten", "must be an integer"),
        ({"page": "0"}, "page", "0", "must be at least 1"),
        ({"page": "-1"}, "page", "-1", "must be at least 1"),
        ({"page": "1.5"}, "page", "1.5", "must be an integer"),
    ],
)
def test_bad_pagination_arguments_are_invalid_argument(fake, session, params, argument, value, issue):
    response = core(fake, session, **params)
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "invalid_argument",
        "description": f"The '{argument}' argument is invalid",
        "detail": {"argument": argument, "path": [argument], "issue": issue, "value": value},
    }


def test_per_page_cap_is_configurable(serve, session):
    fake = serve(synthetic_catalogue(60), per_page_cap=50)
    assert core(fake, session, per_page=50).status_code == 200
    assert error_of(core(fake, session, per_page=51))["detail"]["issue"] == "must be between 1 and 50"


# --- authentication and organizations ---------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}])
def test_missing_token(fake, session, headers):
    response = core(fake, session, headers=headers)
    assert response.status_code == 400
    assert error_of(response) == {"code": "missing_api_token", "description": MISSING_TOKEN, "detail": {}}


def test_invalid_token(fake, session):
    response = core(fake, session, headers={"Authorization": "Bearer tok_nope"})
    assert response.status_code == 403
    assert error_of(response) == {"code": "invalid_api_token", "description": INVALID_TOKEN, "detail": {}}


def test_token_without_read_scope(serve, session):
    fake = serve(tokens={"tok_dns": {"dns_zones:read"}})
    response = core(fake, session, headers={"Authorization": "Bearer tok_dns"})
    assert response.status_code == 403
    assert error_of(response) == {
        "code": "scope_not_granted",
        "description": SCOPE_NOT_GRANTED,
        "detail": {"scopes": [READ_SCOPE]},
    }


@pytest.fixture
def org_fake(serve) -> FakeKatapult:
    """A server with one organization (acme) owning three private packages."""
    private = synthetic_catalogue(3, seed=7, privacy="private")
    return serve(organizations={"org_acme": {"sub_domain": "acme", "packages": private}})


@pytest.mark.parametrize("lookup", [{"organization[id]": "org_acme"}, {"organization[sub_domain]": "acme"}])
def test_organization_packages_follow_the_public_ones(org_fake, session, lookup):
    body = core(org_fake, session, per_page=15, page=2, **lookup).json()
    assert body["pagination"] == {
        "current_page": 2,
        "total_pages": 2,
        "total": 23,
        "per_page": 15,
        "large_set": False,
    }
    expected = public_catalogue()[15:] + synthetic_catalogue(3, seed=7, privacy="private")
    assert body["virtual_machine_packages"] == expected


def test_without_organization_only_public_packages(org_fake, session):
    body = core(org_fake, session).json()
    assert body["pagination"]["total"] == 20
    assert {p["privacy"] for p in body["virtual_machine_packages"]} == {"public"}


def test_an_organization_may_let_in_only_some_tokens(serve, session):
    fake = serve(
        tokens={TOKEN: {READ_SCOPE}, "tok_acme": {READ_SCOPE}},
        organizations={"org_acme": {"sub_domain": "acme", "packages": [], "tokens": {"tok_acme"}}},
    )
    admitted = core(fake, session, headers={"Authorization": "Bearer tok_acme"}, **{"organization[id]": "org_acme"})
    refused = core(fake, session, **{"organization[sub_domain]": "acme"})

    assert admitted.status_code == 200
    assert refused.status_code == 403
    assert error_of(refused) == {
        "code": "permission_denied",
        "description": "The authenticated identity is not permitted to perform this action",
        "detail": {},
    }


@pytest.mark.parametrize("lookup", [{"organization[id]": "org_nope"}, {"organization[sub_domain]": "nope"}])
def test_unknown_organization(org_fake, session, lookup):
    response = core(org_fake, session, **lookup)
    assert response.status_code == 404
    assert error_of(response) == {"code": "organization_not_found", "description": ORG_NOT_FOUND, "detail": {}}


def test_both_organization_lookups_is_invalid_argument(org_fake, session):
    response = core(org_fake, session, **{"organization[id]": "org_acme", "organization[sub_domain]": "acme"})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["description"]) == ("invalid_argument", "The 'organization' argument is invalid")
    assert error["detail"]["argument"] == "organization"


# --- public endpoint and routing ---------------------------------------------


def test_public_endpoint_needs_no_token_and_uses_key_packages(org_fake, session):
    for headers in ({}, {"Authorization": "Bearer tok_nope"}):
        response = session.get(org_fake.url + PUBLIC_PATH, params={"per_page": 5, "page": 4}, headers=headers)
        assert response.status_code == 200
        assert response.json() == {
            "pagination": {"current_page": 4, "total_pages": 4, "total": 20, "per_page": 5, "large_set": False},
            "packages": public_catalogue()[15:],
        }


def test_public_endpoint_validates_per_page(fake, session):
    response = session.get(fake.url + PUBLIC_PATH, params={"per_page": 500})
    assert response.status_code == 400
    assert error_of(response)["detail"]["argument"] == "per_page"


def test_unknown_route(fake, session):
    response = session.get(fake.url + "/core/v1/virtual_machines", headers=AUTH)
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "route_not_found",
        "description": "No route matches '/core/v1/virtual_machines' for GET",
        "detail": {},
    }


def test_non_get_is_refused_with_an_error_body(fake, session):
    response = session.post(fake.url + CORE_PATH, headers=AUTH, json={"x": 1})
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert core(fake, session).status_code == 200  # the connection is still in sync


def test_requests_are_recorded_in_order(fake, session):
    core(fake, session, page=2, per_page=7)
    session.get(fake.url + PUBLIC_PATH)
    first, second = fake.requests
    assert (first.method, first.path, first.query) == ("GET", CORE_PATH, {"page": "2", "per_page": "7"})
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert (second.path, second.query) == (PUBLIC_PATH, {})
    assert "Authorization" not in second.headers


def test_on_request_sees_each_page_and_may_mutate_the_catalogue(serve, session):
    fake = serve(synthetic_catalogue(4))
    seen = []

    def hook(page: int) -> None:
        seen.append(page)
        if page == 2:
            fake.packages.insert(0, synthetic_catalogue(1, seed=99)[0])

    fake.on_request = hook
    first = core(fake, session, page=1, per_page=2).json()
    second = core(fake, session, page=2, per_page=2).json()
    assert seen == [1, 2]
    assert first["pagination"]["total"] == 4
    assert second["pagination"]["total"] == 5
    assert [p["name"] for p in second["virtual_machine_packages"]] == ["PKG-00002", "PKG-00003"]


def test_a_package_removed_after_a_page_is_served_is_gone_from_the_next_answer_on(serve, session):
    catalogue = synthetic_catalogue(6)
    fake = serve(list(catalogue))
    fake.remove_after_page(1, catalogue[0]["id"])

    first = core(fake, session, page=1, per_page=2).json()
    second = core(fake, session, page=2, per_page=2).json()
    again = core(fake, session, page=1, per_page=2).json()

    # Page 1 as it was when asked for; after it, everything shifts left by one, once.
    assert [p["name"] for p in first["virtual_machine_packages"]] == ["PKG-00001", "PKG-00002"]
    assert [p["name"] for p in second["virtual_machine_packages"]] == ["PKG-00004", "PKG-00005"]
    assert [p["name"] for p in again["virtual_machine_packages"]] == ["PKG-00002", "PKG-00003"]
    assert (first["pagination"]["total"], second["pagination"]["total"]) == (6, 5)


def test_after_page_sees_each_page_served(serve, session):
    fake = serve(synthetic_catalogue(5))
    served = []
    fake.after_page = served.append
    for page in (1, 2, 3):
        core(fake, session, page=page, per_page=2)
    assert served == [1, 2, 3]


@pytest.mark.parametrize(
    "totals, omit_large_set, expected",
    [
        ("null", False, {"current_page": 1, "total_pages": None, "total": None, "per_page": 2, "large_set": False}),
        ("null", True, {"current_page": 1, "total_pages": None, "total": None, "per_page": 2}),
        ("absent", False, {"current_page": 1, "per_page": 2, "large_set": False}),
        ("absent", True, {"current_page": 1, "per_page": 2}),
    ],
)
def test_totals_may_be_served_null_or_left_out(serve, session, totals, omit_large_set, expected):
    fake = serve(synthetic_catalogue(5))
    fake.totals, fake.omit_large_set = totals, omit_large_set
    assert core(fake, session, page=1, per_page=2).json()["pagination"] == expected


def test_keep_alive_serves_several_requests_on_one_connection(fake):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        for page in (1, 2, 3):
            conn.request("GET", f"{CORE_PATH}?page={page}&per_page=8", headers=AUTH)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            assert response.version == 11
            assert int(response.getheader("Content-Length")) == len(body)
    finally:
        conn.close()
    assert len(fake.requests) == 3


def test_stop_closes_the_server(serve, session):
    fake = serve()
    assert core(fake, session).status_code == 200  # leaves an idle keep-alive connection
    fake.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        core(fake, requests.Session())
    with pytest.raises(requests.exceptions.ConnectionError):
        core(fake, session)
    fake.stop()  # idempotent


def test_latency_is_added_to_every_request(serve, session):
    fake = serve(latency=0.05)
    started = time.perf_counter()
    assert core(fake, session).status_code == 200
    assert time.perf_counter() - started >= 0.05


# --- rate limiting ----------------------------------------------------------


def test_rate_limit_headers_count_down_then_429(serve, session):
    fake = serve(rate_limit_permitted=3)
    responses = [core(fake, session) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-Ratelimit-Permitted"] for r in responses] == ["3"] * 4
    assert [r.headers["X-Ratelimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert error_of(responses[3]) == {
        "code": "rate_limit_reached",
        "description": RATE_LIMITED,
        "detail": {"total_permitted": 3},
    }
    assert "Retry-After" not in responses[3].headers
    assert session.get(fake.url + PUBLIC_PATH).status_code == 429  # every endpoint is limited

    fake.reset_rate_limit()
    response = core(fake, session)
    assert (response.status_code, response.headers["X-Ratelimit-Remaining"]) == (200, "2")


def test_a_429_after_an_answer_said_nothing_was_left_is_counted_avoidable(serve, session):
    fake = serve(rate_limit_permitted=2)
    statuses = [core(fake, session).status_code for _ in range(4)]
    fake.reset_rate_limit()  # a new minute: nothing said yet
    fake.rate_limit_permitted = 0
    first_of_a_minute = core(fake, session).status_code

    assert (statuses, first_of_a_minute) == ([200, 200, 429, 429], 429)
    assert fake.avoidable_429s == 2  # the third and fourth: the second answer had said 0 was left


# --- faults -----------------------------------------------------------------


def test_fault_status_error_code_and_headers_then_normal_again(fake, session):
    fake.add_fault(Fault(status=429, error_code="rate_limit_reached", headers={"Retry-After": "1"}))
    response = core(fake, session)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Ratelimit-Remaining"] == "599"
    assert error_of(response) == {
        "code": "rate_limit_reached",
        "description": RATE_LIMITED,
        "detail": {"total_permitted": 600},
    }
    assert core(fake, session).status_code == 200


def test_fault_error_code_alone_implies_its_status(fake, session):
    fake.add_fault(Fault(error_code="invalid_api_token"))
    response = core(fake, session)
    assert response.status_code == 403
    assert error_of(response) == {"code": "invalid_api_token", "description": INVALID_TOKEN, "detail": {}}


def test_fault_error_status_alone_gets_an_error_body(fake, session):
    fake.add_fault(Fault(status=503))
    response = core(fake, session)
    assert response.status_code == 503
    assert error_of(response)["code"] == "service_unavailable"


def test_fault_raw_body_and_content_type(fake, session):
    fake.add_fault(Fault(status=502, body=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}))
    response = core(fake, session)
    assert (response.status_code, response.headers["Content-Type"]) == (502, "text/html")
    assert response.content == b"<html>Bad Gateway</html>"
    assert response.headers["Content-Length"] == str(len(response.content))


def test_fault_200_with_malformed_json(fake, session):
    fake.add_fault(Fault(body=b'{"pagination": '))
    response = core(fake, session)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()


def test_fault_repeated_times_fifo(fake, session):
    fake.add_fault(Fault(status=500), times=2)
    fake.add_fault(Fault(status=504))
    assert [core(fake, session).status_code for _ in range(4)] == [500, 500, 504, 200]


def test_fault_delay_triggers_read_timeout_and_then_recovers(fake, session):
    fake.add_fault(Fault(delay=0.15))
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(fake.url + CORE_PATH, headers=AUTH, timeout=0.05)
    assert core(fake, session).status_code == 200


def test_fault_delay_alone_still_sends_the_normal_body(fake, session):
    fake.add_fault(Fault(delay=0.1))
    started = time.perf_counter()
    response = core(fake, session, per_page=5)
    assert time.perf_counter() - started >= 0.1
    assert response.status_code == 200
    assert response.json()["virtual_machine_packages"] == public_catalogue()[:5]


def test_fault_truncated_body_breaks_the_read(fake, session):
    fake.add_fault(Fault(truncate_body=True))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        core(fake, session)
    assert core(fake, session).json()["pagination"]["total"] == 20  # a fresh connection works


def test_fault_truncated_body_with_stream_fails_on_read(fake, session):
    fake.add_fault(Fault(truncate_body=True))
    response = session.get(fake.url + CORE_PATH, headers=AUTH, stream=True, timeout=5)
    assert response.status_code == 200
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _ = response.content  # reading the body is what fails


def test_page_specific_fault_waits_for_its_page(fake, session):
    fake.add_fault(Fault(status=500, error_code="internal_server_error", page=2))
    assert core(fake, session, page=1, per_page=10).status_code == 200
    response = core(fake, session, page=2, per_page=10)
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_server_error"
    assert core(fake, session, page=2, per_page=10).status_code == 200


def test_page_fault_matches_an_implicit_page_one(fake, session):
    fake.add_fault(Fault(status=500, page=1))
    assert core(fake, session).status_code == 500


def test_only_the_head_of_the_fault_queue_is_considered(fake, session):
    fake.add_fault(Fault(status=500, page=2))
    fake.add_fault(Fault(status=503))
    assert core(fake, session, page=1).status_code == 200  # head waits for page 2
    assert core(fake, session, page=2).status_code == 500
    assert core(fake, session, page=1).status_code == 503


def test_a_500_is_katapults_unhandled_exception_with_a_null_description(fake, session):
    fake.add_fault(Fault(status=500))

    response = core(fake, session)

    assert response.status_code == 500
    assert error_of(response) == {"code": "unhandled_exception", "description": None, "detail": {}}


def test_a_page_is_not_marked_as_an_error(fake, session):
    assert "X-Api-Schema" not in core(fake, session).headers
