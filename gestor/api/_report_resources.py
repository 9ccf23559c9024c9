"""The response bodies of the reports (`/v1/admin/reports/...`), as msgspec Structs for the
OpenAPI document and the contract test. Amounts are integer minor units; times RFC 3339 in the
configured time zone's offset."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gestor.api._resources import Amount, Time, _Out

Count = Annotated[int, Meta(description="movements", examples=[42])]
Kind = Literal["purchase", "transfer", "advance", "topup"]
Zone = Annotated[str, Meta(description="the IANA time zone of days, weekdays and hours "
                           "(`[purchase] timezone`)",
                           examples=["America/Argentina/Buenos_Aires"])]


class SeriesRow(_Out):
    at: Time
    kind: Kind
    received: Count
    completed: Count
    rejected: Count
    failed: Count
    refunded: Count
    inconsistent: Count
    revenue: Amount
    fees: Amount
    refunds: Amount
    advances_granted: Amount
    advances_recovered: Amount


class Series(_Out):
    start: Time = msgspec.field(name="from")
    end: Time = msgspec.field(name="to")
    every: Literal["hour", "day"]
    timezone: Zone
    rows: list[SeriesRow]
    advances_outstanding: Amount


class BreakdownRow(_Out):
    key: Annotated[str, Meta(description="the bono, channel, profile, segment or rejection "
                             "code ('' when unknown)", examples=["DATA_2GB_7D"])]
    count: Count
    completed: Count
    rejected: Count
    failed: Count
    refunded: Count
    revenue: Amount


class Breakdown(_Out):
    start: Time = msgspec.field(name="from")
    end: Time = msgspec.field(name="to")
    by: Literal["bono", "channel", "profile", "segment", "rule"]
    rows: list[BreakdownRow]


class PeakCell(_Out):
    weekday: Annotated[int, Meta(ge=0, le=6, description="0 = Monday")]
    hour: Annotated[int, Meta(ge=0, le=23)]
    count: Count


class PeakHours(_Out):
    start: Time = msgspec.field(name="from")
    end: Time = msgspec.field(name="to")
    timezone: Zone
    cells: list[PeakCell]


class LatencyRow(_Out):
    at: Time
    outcome: Literal["completed", "rejected", "failed", "refunded"]
    count: Count
    p50_ms: Annotated[int, Meta(ge=0, description="the upper bound of the latency bucket "
                                "holding the median (buckets 1-2-3-5-7-10... ms)")]
    p99_ms: Annotated[int, Meta(ge=0)]


class Latency(_Out):
    rows: list[LatencyRow]
