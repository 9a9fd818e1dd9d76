"""The OpenAPI document (`GET /openapi.json`, the data file notify/openapi.json): valid OpenAPI
3.1, one operation for each route of the app and none other, and real answers over HTTP (every
status the API gives, bodies and headers) that match what it says of them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import httpx
import pytest
from fsmc.notify.app import create_app
from fsmc.runtime import EventBus, StateChanged
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from tests.notify_server import KEYS, config, serving

DOC: dict[str, Any] = json.loads(
    (resources.files("fsmc.notify") / "openapi.json").read_text("utf-8"))
URI = "urn:fsmc:notify:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OPEN = {("/", "get"), ("/openapi.json", "get")}  # served without a key


def escape(part: str) -> str:
    """A JSON pointer token."""
    return part.replace("~", "~0").replace("/", "~1")


def at(pointer: str) -> Any:
    node: Any = DOC
    for token in pointer.split("/")[1:]:
        name = token.replace("~1", "/").replace("~0", "~")
        node = node[int(name)] if isinstance(node, list) else node[name]
    return node


def follow(pointer: str) -> tuple[str, dict[str, Any]]:
    """The object at `pointer` in the document, through its `$ref`s, and where it really is."""
    node = at(pointer)
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        pointer = node["$ref"][1:]
        node = at(pointer)
    return pointer, node


def conforms(value: object, pointer: str) -> None:
    """`value` is valid under the JSON Schema at `pointer` (its `$ref`s resolved in the
    document)."""
    validator = Draft202012Validator({"$ref": f"{URI}#{pointer}"}, registry=REGISTRY,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(value), key=str)
    assert not errors, f"{value!r} does not match {pointer}: {errors[0].message}"


def check(answer: httpx.Response, path: str, method: str, *, read: bool = True) -> None:
    """`answer` to `method path` is one the document gives: its status is listed there, and its
    media type, body (unless `read` is False: a stream) and required headers match."""
    operation = f"/paths/{escape(path)}/{method}"
    responses = at(operation)["responses"]
    status = str(answer.status_code)
    assert status in responses, f"{method.upper()} {path}: {status} is not documented"
    pointer, response = follow(f"{operation}/responses/{status}")
    for name in response.get("headers", {}):
        header_pointer, header = follow(f"{pointer}/headers/{escape(name)}")
        if header.get("required"):
            assert name in answer.headers, f"{method.upper()} {path} {status}: no {name}"
        if name in answer.headers:
            conforms(answer.headers[name], f"{header_pointer}/schema")
    if "content" not in response:
        assert answer.content == b"", f"{method.upper()} {path} {status}: a body"
        return
    media = answer.headers["content-type"].split(";")[0].strip()
    assert media in response["content"], f"{method.upper()} {path} {status}: {media}"
    if not read:
        return
    body: object = answer.json() if media == "application/json" else answer.text
    conforms(body, f"{pointer}/content/{escape(media)}/schema")


def documented() -> set[tuple[str, str]]:
    return {(path, method) for path, item in DOC["paths"].items() for method in item
            if method in METHODS}


def served() -> set[tuple[str, str]]:
    app = create_app(EventBus(), config())
    asyncio.run(_start_and_stop(app))  # its shutdown closes what it opened (threads, store)
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route), route  # a Mount would need walking
        # Starlette answers HEAD for every GET route by itself.
        found |= {(route.path, method.lower()) for method in route.methods or ()
                  if method != "HEAD"}
    return found


async def _start_and_stop(app: Any) -> None:
    async with app.router.lifespan_context(app):
        pass


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate_openapi(DOC)


def test_the_document_names_every_route_and_no_other() -> None:
    assert served() - documented() == set(), "routes missing from notify/openapi.json"
    assert documented() - served() == set(), "operations the app does not serve"


def test_path_parameters_are_declared() -> None:
    for path, item in DOC["paths"].items():
        declared = {follow(f"/paths/{escape(path)}/parameters/{n}")[1]["name"]
                    for n in range(len(item.get("parameters", [])))}
        named = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == named, path


def key(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def event(account: str) -> StateChanged:
    return StateChanged("VirtualMachine", f"{account}-vm", "StartRequested", "Stopped",
                        "Starting", (), {"account": account})


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on loopback that refuses connections (bound, never listening), held by this
    test so that nothing else takes it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def test_the_document_is_served_without_a_key() -> None:
    with serving(EventBus(), config()) as base:
        answer = httpx.get(f"{base}/openapi.json", timeout=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == DOC
        check(answer, "/openapi.json", "get")


def test_every_operation_without_a_key_is_answered_as_documented() -> None:
    """The two open operations answer 200; every other one 401 with `WWW-Authenticate`."""
    with serving(EventBus(), config()) as base:
        for path, method in sorted(documented()):
            answer = httpx.request(method.upper(), base + path.replace("{id}", "sub_x"),
                                   timeout=10)
            if (path, method) in OPEN:
                assert "security" in at(f"/paths/{escape(path)}/{method}")
                assert answer.status_code == 200, path
            else:
                assert "security" not in at(f"/paths/{escape(path)}/{method}")
                assert answer.status_code == 401, path
            check(answer, path, method)


def test_real_answers_match_the_document(closed_port: int) -> None:
    bus = EventBus()
    options = {"attempts": 1, "base_delay": 0.05, "max_delay": 0.1, "timeout": 2.0}
    with serving(bus, config(allow="127.0.0.1"), webhook_options=options) as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        made = http.post("/v1/subscriptions", headers=key("acme"), json={
            "topic": "VirtualMachine.#", "kind": "webhook", "secret": "s3cret",
            "url": f"http://127.0.0.1:{closed_port}/hook"})
        assert made.status_code == 201
        check(made, "/v1/subscriptions", "post")
        ident = made.json()["id"]
        one = "/v1/subscriptions/{id}"
        letters = one + "/dead-letters"
        for who in ("acme", "admin"):
            listed = http.get("/v1/subscriptions", headers=key(who))
            assert [s["id"] for s in listed.json()["subscriptions"]] == [ident]
            check(listed, "/v1/subscriptions", "get")
        shown = http.get(f"/v1/subscriptions/{ident}", headers=key("acme"))
        assert shown.status_code == 200
        check(shown, one, "get")
        changed = http.patch(f"/v1/subscriptions/{ident}", headers=key("acme"),
                             json={"topic": "VirtualMachine.#Running"})
        assert changed.status_code == 200 and "warning" in changed.json()
        check(changed, one, "patch")
        changed = http.patch(f"/v1/subscriptions/{ident}", headers=key("acme"),
                             json={"topic": "VirtualMachine.#", "secret": "n3w"})
        assert changed.status_code == 200 and "warning" not in changed.json()
        check(changed, one, "patch")
        refused_change = http.patch(f"/v1/subscriptions/{ident}", headers=key("acme"),
                                    json={"kind": "email"})
        assert refused_change.status_code == 422
        check(refused_change, one, "patch")

        bus.post(event("acme"))  # refused by the closed port: a dead letter
        deadline = time.monotonic() + 10
        dead = http.get(f"/v1/subscriptions/{ident}/dead-letters", headers=key("acme"))
        while not dead.json()["dead_letters"] and time.monotonic() < deadline:
            time.sleep(0.05)
            dead = http.get(f"/v1/subscriptions/{ident}/dead-letters", headers=key("acme"))
        assert len(dead.json()["dead_letters"]) == 1
        check(dead, letters, "get")
        redriven = http.post(f"/v1/subscriptions/{ident}/dead-letters/redrive",
                             headers=key("acme"))
        assert redriven.json() == {"redriven": 1}
        check(redriven, letters + "/redrive", "post")

        for path, method in sorted(documented() - OPEN - {("/v1/subscriptions", "post"),
                                                          ("/v1/events", "get"),
                                                          ("/v1/subscriptions", "get")}):
            hidden = http.request(method.upper(), path.replace("{id}", ident),
                                  headers=key("globex"))  # another tenant's: 404
            assert hidden.status_code == 404, path
            check(hidden, path, method)

        not_json = http.post("/v1/subscriptions", headers=key("acme"), content=b"{nope")
        refused = http.post("/v1/subscriptions", headers=key("acme"), json={
            "topic": "#", "kind": "webhook", "url": "file:///etc/passwd", "secret": "s"})
        bad_topic = http.get("/v1/events", headers=key("acme"), params={"topic": "x" * 300})
        assert [a.json()["error"] for a in (not_json, refused, bad_topic)] == [
            "invalid_body", "invalid_subscription", "invalid_topic"]
        check(not_json, "/v1/subscriptions", "post")
        check(refused, "/v1/subscriptions", "post")
        check(bad_topic, "/v1/events", "get")

        with http.stream("GET", "/v1/events", headers=key("acme")) as stream:
            assert stream.status_code == 200
            check(stream, "/v1/events", "get", read=False)
            assert next(stream.iter_lines()) == "retry: 2000"

        gone = http.delete(f"/v1/subscriptions/{ident}", headers=key("acme"))
        assert gone.status_code == 204
        check(gone, one, "delete")


def test_a_key_over_its_rate_is_answered_as_documented() -> None:
    with serving(EventBus(), config(rate=0.1, burst=1)) as base:
        first = httpx.get(f"{base}/v1/subscriptions", headers=key("acme"), timeout=10)
        limited = httpx.get(f"{base}/v1/subscriptions", headers=key("acme"), timeout=10)
        assert (first.status_code, limited.status_code) == (200, 429)
        check(limited, "/v1/subscriptions", "get")


def test_a_response_the_document_does_not_give_is_caught() -> None:
    """The checks above can fail: a subscription showing its secret, an undocumented status,
    a missing header."""
    subscription = {"id": "sub_0123456789abcdef", "tenant": "acme", "topic": "#",
                    "kind": "webhook", "url": "https://a.example/",
                    "created": "2026-12-08T01:30:04.250000Z"}
    conforms(subscription, "/components/schemas/Subscription")
    with pytest.raises(AssertionError, match="does not match"):
        conforms({**subscription, "secret": "s"}, "/components/schemas/Subscription")
    with pytest.raises(AssertionError, match="does not match"):
        conforms({**subscription, "created": 1.0}, "/components/schemas/Subscription")
    request = httpx.Request("GET", "http://x/v1/subscriptions")
    with pytest.raises(AssertionError, match="418 is not documented"):
        check(httpx.Response(418, json={}, request=request), "/v1/subscriptions", "get")
    with pytest.raises(AssertionError, match="no WWW-Authenticate"):
        check(httpx.Response(401, json={"error": "unauthorized", "message": "m"},
                             request=request), "/v1/subscriptions", "get")


def test_unknown_paths_and_methods_get_the_documented_error_shape() -> None:
    """Starlette's own 404 and 405 come as the JSON `Error` of the document too."""
    with serving(EventBus(), config()) as base:
        missing = httpx.get(f"{base}/v2/nothing", timeout=10)
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found",
                                  "message": "no such resource: GET /v2/nothing"}
        conforms(missing.json(), "/components/schemas/Error")
        wrong = httpx.put(f"{base}/v1/events", timeout=10)
        assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
        assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}
        conforms(wrong.json(), "/components/schemas/Error")
