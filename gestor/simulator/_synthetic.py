"""Deterministic synthetic subscribers: every valid msisdn has a profile and an account.

All fields derive from ``blake2b(msisdn)``, so the same msisdn always gets the same data
on every machine and every run. msisdns ``54911000000NN`` (``5491100000000`` …
``5491100000099``) are the *well-known* subscribers: always prepaid, active, not roaming,
with a balance of at least 1,000,000 cents, so examples and tests are predictable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

import attrs

__all__ = [
    "WELL_KNOWN_PREFIX",
    "SyntheticAccount",
    "SyntheticProfile",
    "is_valid_msisdn",
    "is_well_known",
    "synthetic_account",
    "synthetic_profile",
]

WELL_KNOWN_PREFIX = "54911000000"

_T = TypeVar("_T")

_SEGMENTS = (("prepaid", 70), ("postpaid", 20), ("corporate", 7), ("vip", 3))
_REGIONS = (("AMBA", 45), ("CENTRO", 20), ("CUYO", 13), ("NORTE", 12), ("SUR", 10))
_DEVICES = (("smartphone", 80), ("feature", 10), ("tablet", 5), ("router", 5))
_LANGUAGES = (("es", 92), ("en", 8))
_PLANS = {
    "prepaid": ("PRE_BASIC", "PRE_PLUS"),
    "postpaid": ("POST_5GB", "POST_15GB", "POST_UNLIMITED"),
    "corporate": ("CORP_POOL", "CORP_UNLIMITED"),
    "vip": ("VIP_UNLIMITED",),
}
_CREDIT_LIMITS = {"prepaid": 0, "postpaid": 500_000, "corporate": 1_000_000, "vip": 2_000_000}


def is_valid_msisdn(msisdn: str) -> bool:
    return 8 <= len(msisdn) <= 15 and msisdn.isascii() and msisdn.isdigit()


def is_well_known(msisdn: str) -> bool:
    return len(msisdn) == 13 and msisdn.startswith(WELL_KNOWN_PREFIX) and msisdn.isdigit()


class _Draw:
    """Successive uniform numbers taken from the msisdn's hash."""

    def __init__(self, msisdn: str) -> None:
        self._digest = hashlib.blake2b(msisdn.encode(), digest_size=64).digest()
        self._pos = 0

    def unit(self) -> float:
        """A number in [0, 1) from the next 4 bytes."""
        chunk = self._digest[self._pos : self._pos + 4]
        self._pos += 4
        return int.from_bytes(chunk, "big") / 2**32

    def below(self, n: int) -> int:
        return int(self.unit() * n)

    def weighted(self, table: Sequence[tuple[_T, int]]) -> _T:
        point = self.unit() * sum(weight for _, weight in table)
        for value, weight in table:
            if point < weight:
                return value
            point -= weight
        return table[-1][0]


@attrs.frozen
class SyntheticProfile:
    msisdn: str
    segment: str
    tenure_months: int
    region: str
    device: str
    plan: str
    birthday_month: int
    language: str


@attrs.frozen
class SyntheticAccount:
    msisdn: str
    balance: int
    line_status: str
    roaming: bool
    credit_limit: int


def synthetic_profile(msisdn: str) -> SyntheticProfile:
    draw = _Draw(msisdn)
    segment = "prepaid" if is_well_known(msisdn) else draw.weighted(_SEGMENTS)
    draw.unit()  # keep the draws aligned whatever the segment rule
    plans = _PLANS[segment]
    return SyntheticProfile(
        msisdn=msisdn,
        segment=segment,
        tenure_months=draw.below(241),
        region=draw.weighted(_REGIONS),
        device=draw.weighted(_DEVICES),
        plan=plans[draw.below(len(plans))],
        birthday_month=1 + draw.below(12),
        language=draw.weighted(_LANGUAGES),
    )


def synthetic_account(msisdn: str) -> SyntheticAccount:
    """The account as it is before any debit, refund or override.

    Balance: 8% of subscribers have 0-299,999 cents, the rest 300,000-5,000,000 skewed low
    (quadratic). Line status: ~3% suspended, ~1% barred. ~5% are roaming.
    """
    segment = synthetic_profile(msisdn).segment
    draw = _Draw(msisdn[::-1] + "/ocs")
    low, amount, status, roaming = draw.unit(), draw.unit(), draw.unit(), draw.unit()
    if is_well_known(msisdn):
        balance = 1_000_000 + int(amount * 4_000_000)
        line_status, is_roaming = "active", False
    else:
        low_balance = int(amount * 300_000)
        balance = low_balance if low < 0.08 else 300_000 + int(amount * amount * 4_700_000)
        line_status = "suspended" if status < 0.03 else "barred" if status < 0.04 else "active"
        is_roaming = roaming < 0.05
    return SyntheticAccount(
        msisdn=msisdn,
        balance=balance,
        line_status=line_status,
        roaming=is_roaming,
        credit_limit=_CREDIT_LIMITS[segment],
    )
