"""Who is asking, and what they may see.

`Authenticator.identify` turns an `Authorization: Bearer <key>` header into a `Principal` (a
tenant or the admin) by hashing the key and comparing the hash with every stored one in constant
time; `owner_of` says which tenant an event belongs to, and `Principal.can_see` whether a
principal may see it. Nothing here logs, and no key is kept: only its hash, for the comparison.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from fsmc.runtime import StateChanged

from .config import NotifyConfig, hash_key, short_hash

__all__ = ["Authenticator", "Principal", "owner_of"]

# RFC 9110 credentials: the scheme, one or more spaces, then the key (visible ASCII, no spaces).
_BEARER = re.compile(r"([A-Za-z]+) +([!-~]+)")


@dataclass(frozen=True)
class Principal:
    """A tenant (`tenant` = its id, `admin` False) or the admin (`tenant` None, `admin` True)."""

    tenant: str | None
    admin: bool

    def __post_init__(self) -> None:
        if self.admin == (self.tenant is not None):
            raise ValueError(f"a principal is either a tenant or the admin, not tenant="
                             f"{self.tenant!r} with admin={self.admin}")

    def can_see(self, account: object) -> bool:
        """Whether events of `account` (see `owner_of`) are visible: the admin sees all, a
        tenant those of its own id."""
        return self.admin or (isinstance(account, str) and account == self.tenant)


ADMIN = Principal(None, True)


def owner_of(event: StateChanged) -> str | None:
    """The tenant `event` belongs to: its `payload["account"]` if that is a string, else None
    (an event nobody but the admin sees)."""
    account = event.payload.get("account")
    return account if isinstance(account, str) else None


class Authenticator:
    """Identifies the callers of the service from the key hashes of a `NotifyConfig`."""

    def __init__(self, config: NotifyConfig) -> None:
        entries: dict[str, Principal] = {}
        stored = [(h, Principal(tenant.id, False)) for tenant in config.tenants
                  for h in tenant.key_hashes]
        stored += [(h, ADMIN) for h in config.admin_key_hashes]
        for key_hash, principal in stored:
            other = entries.setdefault(key_hash, principal)
            if other != principal:
                raise ValueError(f"the key hash {short_hash(key_hash)} belongs to two "
                                 f"principals ({other} and {principal})")
        self._entries = tuple((key_hash.encode("ascii"), principal)
                              for key_hash, principal in entries.items())

    def identify(self, authorization_header: str | None) -> Principal | None:
        """The principal whose key the header presents; None if the header is missing, is not
        exactly `Bearer <key>` (any case for "Bearer", one space or more) or holds an unknown
        key. The presented key's hash is compared with every stored hash, match or not, so the
        time taken does not tell which one (or how much of one) it matched."""
        if authorization_header is None:
            return None
        match = _BEARER.fullmatch(authorization_header)
        if match is None or match[1].lower() != "bearer":
            return None
        presented = hash_key(match[2]).encode("ascii")
        found: Principal | None = None
        for key_hash, principal in self._entries:
            if hmac.compare_digest(key_hash, presented):
                found = principal
        return found
