"""SQL for per-subscriber restrictions (codes the rules see as `restrictions`). Nothing caches
them: every acceptance and listing reads them in the crossing that decides, so a change holds at
once in every worker and node."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs


@attrs.frozen
class Restriction:
    msisdn: str
    code: str
    reason: str | None
    until: datetime | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
            "created_at": self.created_at.isoformat(),
        }


def _restriction(row: Any) -> Restriction:
    return Restriction(row["msisdn"], row["code"], row["reason"], row["until"], row["created_at"])


async def list_for(conn: Any, msisdn: str) -> list[Restriction]:
    rows = await conn.fetch("SELECT * FROM restrictions WHERE msisdn = $1 ORDER BY code", msisdn)
    return [_restriction(r) for r in rows]


async def put(conn: Any, msisdn: str, code: str, reason: str | None,
              until: datetime | None) -> Restriction:
    row = await conn.fetchrow(
        "INSERT INTO restrictions (msisdn, code, reason, until) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (msisdn, code) DO UPDATE SET reason = EXCLUDED.reason,"
        " until = EXCLUDED.until RETURNING *",
        msisdn, code, reason, until,
    )
    return _restriction(row)


async def delete(conn: Any, msisdn: str, code: str) -> bool:
    result = await conn.execute(
        "DELETE FROM restrictions WHERE msisdn = $1 AND code = $2", msisdn, code
    )
    return bool(result != "DELETE 0")
