"""What the platform clients return: frozen records decoded straight from the JSON answers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "Account",
    "CreditReceipt",
    "CustomerData",
    "DebitReceipt",
    "Profile",
    "Provisioned",
    "RefundReceipt",
]


@attrs.frozen
class Profile:
    """Customer profile from the data warehouse (dwh)."""

    msisdn: str
    segment: str  # prepaid | postpaid | vip | corporate
    tenure_months: int
    region: str  # AMBA | CENTRO | NORTE | SUR | CUYO
    device: str  # smartphone | feature | tablet | router
    plan: str
    birthday_month: int
    language: str  # es | en

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Account:
    """Real-time account from the charging system (ocs); amounts in cents."""

    msisdn: str
    balance: int
    currency: str
    line_status: str  # active | suspended | barred
    roaming: bool
    credit_limit: int

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class CustomerData(Mapping[str, Any]):
    """Profile and account of one subscriber, merged; usable as a read-only mapping."""

    msisdn: str
    segment: str
    tenure_months: int
    region: str
    device: str
    plan: str
    birthday_month: int
    language: str
    balance: int
    currency: str
    line_status: str
    roaming: bool
    credit_limit: int

    @classmethod
    def merge(cls, profile: Profile, account: Account) -> CustomerData:
        return cls(**{**profile.as_dict(), **account.as_dict()})

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def __getitem__(self, key: str) -> Any:
        if key not in _CUSTOMER_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_CUSTOMER_FIELDS)

    def __len__(self) -> int:
        return len(_CUSTOMER_FIELDS)


_CUSTOMER_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(CustomerData))


@attrs.frozen
class DebitReceipt:
    """A debit the charging system performed (``refunded`` as of when it was read)."""

    id: str
    msisdn: str
    amount: int
    balance_after: int
    created_at: str
    status: str = "debited"
    refunded: bool = False


@attrs.frozen
class RefundReceipt:
    id: str
    debit_id: str
    amount: int
    balance_after: int
    msisdn: str = ""
    created_at: str = ""
    status: str = "refunded"


@attrs.frozen
class CreditReceipt:
    """A credit the charging system performed (money added to a balance, e.g. a transfer's
    beneficiary or a balance advance)."""

    id: str
    msisdn: str
    amount: int
    balance_after: int
    created_at: str
    status: str = "credited"


@attrs.frozen
class Provisioned:
    id: str
    msisdn: str
    bono_id: str
    expires_at: str
    status: str = "provisioned"
