"""The notification service's configuration, authentication and rate limiting: every config
rule with its message, Bearer parsing, the constant-time comparison, token buckets on a fake
clock, and a property test that stored keys always authenticate and nothing else does."""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import threading
from pathlib import Path

import pytest
from fsmc.notify import auth as auth_module
from fsmc.notify.auth import Authenticator, Principal, owner_of
from fsmc.notify.config import (
    DEFAULT_BURST,
    DEFAULT_CLIENT_QUEUE,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_DEAD_LETTERS,
    DEFAULT_RATE,
    DEFAULT_REPLAY,
    ConfigError,
    NotifyConfig,
    Tenant,
    hash_key,
    load_config,
    parse_config,
)
from fsmc.notify.ratelimit import RateLimiter
from fsmc.runtime import StateChanged
from fsmc.runtime.errors import FsmcError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

ACME_KEY = "acme-secret-1"
ACME_KEY_2 = "acme-secret-2"
GLOBEX_KEY = "globex-secret"
ADMIN_KEY = "admin-secret"

VALID = f"""
[[tenants]]
id = "acme"
api_keys = ["{hash_key(ACME_KEY)}", "{hash_key(ACME_KEY_2)}"]

[[tenants]]
id = "globex"
api_keys = ["{hash_key(GLOBEX_KEY)}"]

[admin]
api_keys = ["{hash_key(ADMIN_KEY)}"]

[webhooks]
allow_hosts = ["hooks.internal", "10.0.0.7:8443"]
max_dead_letters = 250

[limits]
rate = 5
burst = 7
replay = 100
client_queue = 50
heartbeat = 2.5
"""


def h(key: str) -> str:
    return hash_key(key)


def fails(text: str, *fragments: str, path: str = "notify.toml") -> ConfigError:
    """Parse `text`, expect a ConfigError whose message names the file and holds `fragments`."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return caught.value


# -- hash_key ---------------------------------------------------------------------------------


def test_hash_key_is_sha256_hex_of_utf8() -> None:
    assert hash_key("k") == "sha256:" + hashlib.sha256(b"k").hexdigest()
    assert hash_key("clé") == "sha256:" + hashlib.sha256("clé".encode()).hexdigest()
    assert len(hash_key("")) == len("sha256:") + 64


# -- valid configs ----------------------------------------------------------------------------


def test_valid_config_round_trip() -> None:
    config = parse_config(VALID)
    assert config == NotifyConfig(
        tenants=(Tenant("acme", frozenset({h(ACME_KEY), h(ACME_KEY_2)})),
                 Tenant("globex", frozenset({h(GLOBEX_KEY)}))),
        admin_key_hashes=frozenset({h(ADMIN_KEY)}),
        allow_hosts=frozenset({"hooks.internal", "10.0.0.7:8443"}), max_dead_letters=250,
        rate=5.0, burst=7, replay=100, client_queue=50, heartbeat=2.5, source_path=None)
    assert isinstance(config.rate, float)


def test_defaults() -> None:
    config = parse_config("")
    assert config == NotifyConfig()
    assert (config.rate, config.burst, config.replay, config.client_queue, config.heartbeat) == (
        DEFAULT_RATE, DEFAULT_BURST, DEFAULT_REPLAY, DEFAULT_CLIENT_QUEUE, DEFAULT_HEARTBEAT)
    assert (DEFAULT_RATE, DEFAULT_BURST, DEFAULT_REPLAY, DEFAULT_CLIENT_QUEUE,
            DEFAULT_HEARTBEAT) == (20.0, 40, 10_000, 1_000, 15.0)
    assert config.tenants == () and config.admin_key_hashes == frozenset()
    assert config.allow_hosts == frozenset()
    assert config.max_dead_letters == DEFAULT_MAX_DEAD_LETTERS == 1_000


def test_partial_limits_keep_other_defaults() -> None:
    config = parse_config("[limits]\nburst = 3\n")
    assert config.burst == 3 and config.rate == DEFAULT_RATE and config.replay == DEFAULT_REPLAY


def test_empty_tables_are_fine() -> None:
    config = parse_config("tenants = []\n[admin]\napi_keys = []\n[webhooks]\n[limits]\n")
    assert config == NotifyConfig()


def test_tenant_with_no_keys_is_allowed_and_a_repeated_key_counts_once() -> None:
    config = parse_config(f'[[tenants]]\nid = "a"\napi_keys = []\n'
                          f'[[tenants]]\nid = "b"\napi_keys = ["{h("k")}", "{h("k")}"]\n')
    assert config.tenants == (Tenant("a"), Tenant("b", frozenset({h("k")})))


def test_load_config_reads_a_file_and_records_its_path(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_text(VALID, encoding="utf-8")
    config = load_config(path)
    assert config.source_path == str(path)
    assert config.tenants == parse_config(VALID).tenants


def test_repr_shows_no_key_hash() -> None:
    text = repr(parse_config(VALID))
    assert "acme" in text
    for key in (ACME_KEY, ACME_KEY_2, GLOBEX_KEY, ADMIN_KEY):
        assert h(key)[7:19] not in text


# -- ConfigError cases ------------------------------------------------------------------------


def test_config_error_is_an_fsmc_error_and_pickles() -> None:
    error = fails("[limits]\nrate = 0\n", "[limits]: rate")
    assert isinstance(error, FsmcError)
    assert error.path == "notify.toml" and error.where == "[limits]: rate"
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.path, copy.where) == (str(error), error.path, error.where)


def test_not_toml_gives_line_and_column() -> None:
    fails("[[tenants]]\nid = \n", "not valid TOML", "line 2", "column")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: cannot read the configuration"):
        load_config(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'[[tenants]]\nid = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin\.toml: not valid TOML: not UTF-8"):
        load_config(path)


def test_toml_error_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("= 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: not valid TOML")
    assert "line 1" in str(caught.value)


def test_unknown_top_level_table() -> None:
    error = fails('[[tenant]]\nid = "a"\napi_keys = []\n',
                  "unknown top-level table or key 'tenant'", "did you mean 'tenants'?",
                  "expected one of: tenants, admin, webhooks, broker, limits")
    assert error.where == ""


def test_unknown_top_level_key() -> None:
    fails("debug = true\n", "unknown top-level table or key 'debug'")


def test_unknown_key_in_tenant() -> None:
    fails(f'[[tenants]]\nid = "a"\napi_key = ["{h("k")}"]\n',
          "[[tenants]] #1 (id 'a'): unknown key 'api_key'; did you mean 'api_keys'?")


def test_unknown_keys_in_admin_webhooks_limits() -> None:
    fails("[admin]\napi_keys = []\nkeys = []\n", "[admin]: unknown key 'keys'")
    fails("[webhooks]\nallow_host = []\n", "[webhooks]: unknown key 'allow_host'",
          "did you mean 'allow_hosts'?")
    fails("[limits]\nrates = 1\n", "[limits]: unknown key 'rates'", "did you mean 'rate'?")


def test_tables_of_the_wrong_shape() -> None:
    fails('[tenants]\nid = "a"\n', "tenants: must be an array of tables, written [[tenants]]",
          "not a table")
    fails('tenants = ["a"]\n', "tenants: must be an array of tables")
    fails("admin = 1\n", "[admin]: must be a table ([admin]), not an integer")
    fails("webhooks = []\n", "[webhooks]: must be a table")
    fails('limits = "fast"\n', "[limits]: must be a table", "not a string")


def test_tenant_without_id() -> None:
    error = fails(f'[[tenants]]\nid = "a"\napi_keys = []\n[[tenants]]\napi_keys = ["{h("k")}"]\n',
                  "[[tenants]] #2: tenant without an id")
    assert error.where == "[[tenants]] #2"


def test_tenant_id_not_a_string() -> None:
    fails("[[tenants]]\nid = 7\napi_keys = []\n",
          "[[tenants]] #1: id: must be a non-empty string, not an integer")
    fails('[[tenants]]\nid = ""\napi_keys = []\n', "[[tenants]] #1: id: must be a non-empty")


def test_the_admins_marker_is_no_tenant_id() -> None:
    """`*` marks the admin's webhook subscriptions (they see every tenant): a tenant called so
    would receive, list and delete them."""
    from fsmc.notify.webhooks import ALL_TENANTS as MARKER

    assert MARKER == "*"
    fails('[[tenants]]\nid = "*"\napi_keys = []\n',
          "[[tenants]] #1: id: '*' is reserved: it marks the admin's subscriptions")


def test_duplicate_tenant_ids() -> None:
    fails(f'[[tenants]]\nid = "a"\napi_keys = ["{h("1")}"]\n'
          f'[[tenants]]\nid = "b"\napi_keys = ["{h("2")}"]\n'
          f'[[tenants]]\nid = "a"\napi_keys = ["{h("3")}"]\n',
          "[[tenants]] #3 (id 'a'): duplicate tenant id: [[tenants]] #1 has it too")


def test_api_keys_missing() -> None:
    fails('[[tenants]]\nid = "a"\n', "[[tenants]] #1 (id 'a'): api_keys is missing")
    fails("[admin]\n", "[admin]: api_keys is missing")


def test_api_keys_not_a_list_of_strings() -> None:
    fails(f'[[tenants]]\nid = "a"\napi_keys = "{h("k")}"\n',
          "[[tenants]] #1 (id 'a'): api_keys: must be a list of strings (key hashes), "
          "not a string")
    fails(f'[[tenants]]\nid = "a"\napi_keys = ["{h("k")}", 3]\n',
          "api_keys: must be a list of strings (key hashes); item #2 is an integer")
    fails("[admin]\napi_keys = [[]]\n", "[admin]: api_keys: must be a list of strings",
          "item #1 is an array")


@pytest.mark.parametrize("stored", [
    "plain-text-key-do-not-show",  # a key written as is
    "sha256:" + "A" * 64,  # upper case
    "sha256:" + "a" * 63,  # too short
    "sha256:" + "a" * 65,  # too long
    "sha512:" + "a" * 64,  # another algorithm
    " sha256:" + "a" * 64,  # stray space
    "sha256:" + "g" * 64,  # not hex
    "",
])
def test_key_not_stored_hashed(stored: str) -> None:
    for text, where in [
        (f'[[tenants]]\nid = "a"\napi_keys = ["{h("k")}", "{stored}"]\n',
         "[[tenants]] #1 (id 'a'): api_keys item #2"),
        (f'[admin]\napi_keys = ["{stored}"]\n', "[admin]: api_keys item #1"),
    ]:
        error = fails(text, where,
                      "not a key hash of the form sha256:<64 lowercase hex digits>",
                      "keys must be stored hashed",
                      "hashlib.sha256(b'KEY').hexdigest()",
                      "fsmc.notify.config.hash_key('KEY')")
        if stored:
            assert stored.strip() not in str(error)  # never echo what may be a key


def test_same_hash_for_two_tenants() -> None:
    shared = h("shared")
    error = fails(f'[[tenants]]\nid = "a"\napi_keys = ["{shared}"]\n'
                  f'[[tenants]]\nid = "b"\napi_keys = ["{h("other")}", "{shared}"]\n',
                  f"the key hash {shared[:19]}… is used by both [[tenants]] #1 (id 'a') and "
                  f"[[tenants]] #2 (id 'b')")
    assert shared not in str(error)
    assert shared[:20] not in str(error)  # 12 hex digits, no more


def test_same_hash_for_a_tenant_and_the_admin() -> None:
    shared = h("shared")
    error = fails(f'[admin]\napi_keys = ["{shared}"]\n'
                  f'[[tenants]]\nid = "a"\napi_keys = ["{shared}"]\n',
                  "is used by both [[tenants]] #1 (id 'a') and [admin]")
    assert shared not in str(error)


@pytest.mark.parametrize(("key", "value", "why"), [
    ("rate", "0", "must be a positive number, not 0"),
    ("rate", "-1.5", "must be a positive number, not -1.5"),
    ("rate", "nan", "must be a positive number, not nan"),
    ("rate", "inf", "must be a positive number, not inf"),
    ("rate", '"fast"', "must be a positive number, not a string"),
    ("rate", "true", "must be a positive number, not a boolean"),
    ("heartbeat", "0.0", "must be a positive number, not 0.0"),
    ("heartbeat", "-3", "must be a positive number, not -3"),
    ("burst", "0", "must be a positive integer, not 0"),
    ("burst", "-2", "must be a positive integer, not -2"),
    ("burst", "2.5", "must be a positive integer, not a float"),
    ("replay", "0", "must be a positive integer, not 0"),
    ("replay", "true", "must be a positive integer, not a boolean"),
    ("client_queue", "-1", "must be a positive integer, not -1"),
    ("client_queue", "[]", "must be a positive integer, not an array"),
])
def test_bad_limits(key: str, value: str, why: str) -> None:
    error = fails(f"[limits]\n{key} = {value}\n", f"[limits]: {key}: {why}")
    assert error.where == f"[limits]: {key}"


def test_allow_hosts_not_a_list_of_strings() -> None:
    fails('[webhooks]\nallow_hosts = "localhost"\n',
          "[webhooks]: allow_hosts: must be a list of strings", "not a string")
    fails('[webhooks]\nallow_hosts = ["localhost", 127]\n',
          "[webhooks]: allow_hosts: must be a list of strings", "item #2 is an integer")
    fails('[webhooks]\nallow_hosts = [""]\n', "[webhooks]: allow_hosts: '' is not a host name")
    fails('[webhooks]\nallow_hosts = [" localhost"]\n', "is not a host name")


def test_max_dead_letters_alone_keeps_no_allowed_host() -> None:
    config = parse_config("[webhooks]\nmax_dead_letters = 1\n")
    assert (config.max_dead_letters, config.allow_hosts) == (1, frozenset())


@pytest.mark.parametrize(("value", "why"), [
    ("0", "must be a positive integer, not 0"),
    ("-5", "must be a positive integer, not -5"),
    ("10.5", "must be a positive integer, not a float"),
    ('"1000"', "must be a positive integer, not a string"),
    ("true", "must be a positive integer, not a boolean"),
])
def test_bad_max_dead_letters(value: str, why: str) -> None:
    error = fails(f"[webhooks]\nmax_dead_letters = {value}\n",
                  f"[webhooks]: max_dead_letters: {why}")
    assert error.where == "[webhooks]: max_dead_letters"


def test_a_misspelt_max_dead_letters_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_text("[webhooks]\nmax_dead_letter = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: [webhooks]: unknown key 'max_dead_letter'; did you mean "
        "'max_dead_letters'? expected one of: allow_hosts, max_dead_letters, lease")


def test_default_path_in_messages() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: \[limits\]: rate"):
        parse_config("[limits]\nrate = 0\n")


# -- authentication ---------------------------------------------------------------------------


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(parse_config(VALID))


ACME = Principal("acme", False)
GLOBEX = Principal("globex", False)
ADMIN = Principal(None, True)


def test_identify_tenants_and_admin(authenticator: Authenticator) -> None:
    assert authenticator.identify(f"Bearer {ACME_KEY}") == ACME
    assert authenticator.identify(f"Bearer {ACME_KEY_2}") == ACME
    assert authenticator.identify(f"Bearer {GLOBEX_KEY}") == GLOBEX
    assert authenticator.identify(f"Bearer {ADMIN_KEY}") == ADMIN


@pytest.mark.parametrize("header", [
    f"bearer {ACME_KEY}",
    f"BEARER {ACME_KEY}",
    f"BeArEr {ACME_KEY}",
    f"Bearer   {ACME_KEY}",
])
def test_bearer_scheme_any_case_and_spaces(authenticator: Authenticator, header: str) -> None:
    assert authenticator.identify(header) == ACME


@pytest.mark.parametrize("header", [
    None,
    "",
    "Bearer",
    "Bearer ",
    f"Bearer{ACME_KEY}",
    f" Bearer {ACME_KEY}",
    f"Bearer {ACME_KEY} ",
    f"Bearer {ACME_KEY}\n",
    f"Bearer\t{ACME_KEY}",
    f"Bearer {ACME_KEY} extra",
    f"Basic {ACME_KEY}",
    f"Token {ACME_KEY}",
    f"Bearer: {ACME_KEY}",
    ACME_KEY,
    f"Bearer {h(ACME_KEY)}",  # the stored hash is not a key
    "Bearer unknown-key",
    f"Bearer {ACME_KEY.upper()}",
    f"Bearer {ACME_KEY[:-1]}",
])
def test_missing_malformed_or_unknown(authenticator: Authenticator, header: str | None) -> None:
    assert authenticator.identify(header) is None


def test_compares_with_every_stored_hash(authenticator: Authenticator,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    stored = 4  # two acme keys, one globex, one admin
    for header in ("Bearer unknown", f"Bearer {ACME_KEY}", f"Bearer {ADMIN_KEY}"):
        calls.clear()
        authenticator.identify(header)
        assert len(calls) == stored, header
        assert {a for a, _ in calls} == {
            k.encode() for k in (h(ACME_KEY), h(ACME_KEY_2), h(GLOBEX_KEY), h(ADMIN_KEY))}
        assert {b for _, b in calls} == {h(header.split()[1]).encode()}


def test_malformed_header_compares_nothing(authenticator: Authenticator,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(auth_module.hmac, "compare_digest",
                        lambda a, b: calls.append(a) or False)
    assert authenticator.identify(f"Basic {ACME_KEY}") is None
    assert calls == []


def test_authenticator_refuses_a_hash_shared_by_two_principals() -> None:
    config = NotifyConfig(tenants=(Tenant("a", frozenset({h("k")})),),
                          admin_key_hashes=frozenset({h("k")}))
    with pytest.raises(ValueError, match="belongs to two principals") as caught:
        Authenticator(config)
    assert h("k") not in str(caught.value)


def test_no_keys_authenticates_nobody() -> None:
    assert Authenticator(NotifyConfig()).identify("Bearer anything") is None


# -- authorization ----------------------------------------------------------------------------


def event(payload: dict[str, object]) -> StateChanged:
    return StateChanged("VirtualMachine", "vm-1", "StartRequested", "Allocated", "Starting", (),
                        payload)


def test_owner_of() -> None:
    assert owner_of(event({"account": "acme"})) == "acme"
    assert owner_of(event({})) is None
    assert owner_of(event({"account": 42})) is None
    assert owner_of(event({"account": None})) is None


def test_can_see() -> None:
    assert ACME.can_see("acme")
    assert not ACME.can_see("globex")
    assert not ACME.can_see(None)
    assert not ACME.can_see(42)
    assert not ACME.can_see("ACME")
    for account in ("acme", "globex", None, 42):
        assert ADMIN.can_see(account)
    assert ACME.can_see(owner_of(event({"account": "acme"})))
    assert not ACME.can_see(owner_of(event({})))


def test_principal_is_tenant_or_admin() -> None:
    with pytest.raises(ValueError, match="either a tenant or the admin"):
        Principal("acme", True)
    with pytest.raises(ValueError, match="either a tenant or the admin"):
        Principal(None, False)


TOKEN = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                max_size=64)


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(TOKEN, min_size=1, max_size=6, unique=True), admin=TOKEN,
       other=st.text(max_size=80), scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]),
       spaces=st.integers(min_value=1, max_value=3))
def test_hashed_keys_authenticate_and_nothing_else_does(
        keys: list[str], admin: str, other: str, scheme: str, spaces: int) -> None:
    assume(admin not in keys)
    config = parse_config(f'[[tenants]]\nid = "t"\napi_keys = {json.dumps([h(k) for k in keys])}\n'
                          f'[admin]\napi_keys = ["{h(admin)}"]\n')
    authenticator = Authenticator(config)
    for key in keys:
        assert authenticator.identify(f"{scheme}{' ' * spaces}{key}") == Principal("t", False)
    assert authenticator.identify(f"Bearer {admin}") == ADMIN
    # a header that authenticates ends with a key: keep `other` clear of that
    assume(not any(other.endswith(key) for key in [*keys, admin]))
    assert authenticator.identify(f"Bearer {other}") is None
    assert authenticator.identify(other) is None


# -- rate limiting ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_retry_after_then_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("k") == pytest.approx(0.5)  # a refusal takes nothing
    clock.now += 0.25
    assert limiter.acquire("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") == pytest.approx(0.5)
    clock.now += 100  # refills up to the burst, no further
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)


def test_separate_keys() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0.0
    assert limiter.acquire("b") == pytest.approx(1.0)


def test_clock_going_back_refills_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.acquire("a") == 0.0
    clock.now -= 10
    assert limiter.acquire("a") == pytest.approx(1.0)


def test_bad_limiter_arguments() -> None:
    for rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rate must be a positive number"):
            RateLimiter(rate, 1)
    for burst in (0, -1, True):
        with pytest.raises(ValueError, match="burst must be a positive integer"):
            RateLimiter(1.0, burst)


def test_prunes_full_buckets_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10.0, burst=5, clock=clock, prune_above=10)
    for n in range(10):
        limiter.acquire(f"idle-{n}")
    assert len(limiter) == 10
    clock.now += 0.05  # half a token back: nobody is full yet
    limiter.acquire("a")  # at the bound: a prune finds nothing to forget...
    assert len(limiter) == 11  # ...and the bound doubles (to 20)
    clock.now += 1.0  # every bucket full again
    for _ in range(5):
        limiter.acquire("busy")
    for n in range(8):
        limiter.acquire(f"fresh-{n}")  # 4 tokens left each: not full
    assert len(limiter) == 20  # no prune below the doubled bound
    limiter.acquire("trigger")
    # forgotten: the 10 idle ones and "a" (full); kept: busy (empty), fresh-*, trigger
    assert len(limiter) == 1 + 8 + 1
    assert limiter.acquire("busy") == pytest.approx(0.1)  # a bucket still filling was kept
    assert limiter.acquire("idle-0") == 0.0  # a forgotten one starts full


def test_pruning_changes_no_answer() -> None:
    clock = FakeClock()
    pruned = RateLimiter(rate=3.0, burst=2, clock=clock, prune_above=4)
    kept = RateLimiter(rate=3.0, burst=2, clock=clock, prune_above=10**9)
    for step in range(400):
        key = f"k{(step * 7) % 13}"
        assert pruned.acquire(key) == kept.acquire(key)
        clock.now += 0.05 * (step % 5)
    assert len(pruned) < len(kept)


def test_threads_share_the_bucket() -> None:
    limiter = RateLimiter(rate=1.0, burst=100, clock=FakeClock())  # the clock stands still
    allowed: list[int] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        allowed.append(sum(limiter.acquire(key) == 0.0
                           for key in ("shared",) * 200 + tuple(f"own-{threading.get_ident()}-{n}"
                                                                for n in range(50))))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100 + 8 * 50  # exactly the burst of the shared key, plus own keys
    assert len(limiter) == 1 + 8 * 50
