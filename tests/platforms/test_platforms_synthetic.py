"""Synthetic subscribers: deterministic, well-known range predictable, sane distribution."""

from __future__ import annotations

from gestor.simulator import is_valid_msisdn, is_well_known
from gestor.simulator._synthetic import synthetic_account, synthetic_profile


def test_same_msisdn_same_data() -> None:
    assert synthetic_profile("5493510000123") == synthetic_profile("5493510000123")
    assert synthetic_account("5493510000123") == synthetic_account("5493510000123")
    assert synthetic_profile("5493510000123") != synthetic_profile("5493510000124")


def test_known_values_are_stable_across_versions() -> None:
    # pins the derivation rule: changing it silently would break recorded fixtures
    profile = synthetic_profile("5491100000001")
    account = synthetic_account("5491100000001")
    assert (profile.segment, profile.region, profile.device, profile.language) == (
        "prepaid", "AMBA", "smartphone", "es"
    )
    assert account.balance == 1_681_332


def test_well_known_range_is_predictable() -> None:
    for n in range(100):
        msisdn = f"54911000000{n:02d}"
        assert is_well_known(msisdn)
        profile, account = synthetic_profile(msisdn), synthetic_account(msisdn)
        assert profile.segment == "prepaid"
        assert account.line_status == "active"
        assert account.roaming is False
        assert account.balance >= 1_000_000
        assert account.credit_limit == 0
    assert not is_well_known("549110000001")  # 12 digits
    assert not is_well_known("5491100000100")


def test_population_mix() -> None:
    n = 20_000
    accounts = [synthetic_account(str(5493000000000 + i * 7919)) for i in range(n)]
    profiles = [synthetic_profile(a.msisdn) for a in accounts]

    def share(count: int) -> float:
        return count / n

    assert 0.02 < share(sum(a.line_status == "suspended" for a in accounts)) < 0.04
    assert 0.005 < share(sum(a.line_status == "barred" for a in accounts)) < 0.015
    assert 0.04 < share(sum(a.roaming for a in accounts)) < 0.06
    assert share(sum(a.balance >= 300_000 for a in accounts)) > 0.85
    assert all(0 <= a.balance <= 5_000_000 for a in accounts)
    assert {p.segment for p in profiles} == {"prepaid", "postpaid", "vip", "corporate"}
    assert {p.region for p in profiles} == {"AMBA", "CENTRO", "NORTE", "SUR", "CUYO"}
    assert {p.device for p in profiles} == {"smartphone", "feature", "tablet", "router"}
    assert {p.language for p in profiles} == {"es", "en"}
    assert {p.birthday_month for p in profiles} == set(range(1, 13))


def test_msisdn_validity() -> None:
    assert is_valid_msisdn("12345678")
    assert is_valid_msisdn("123456789012345")
    assert not is_valid_msisdn("1234567")
    assert not is_valid_msisdn("1234567890123456")
    assert not is_valid_msisdn("54911abc00001")
    assert not is_valid_msisdn("\uff15" * 10)  # FULLWIDTH DIGIT FIVE: not ASCII
