"""`[notifications]` of gestor.toml: the shipped config, the routes the triggers get, the SMTP
password (from the environment or a file, never in a repr), and each bad value refused with one
line naming the key and its line in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gestor.model import Severity
from gestor.settings import Settings, SettingsError, load_settings
from gestor.store import RouteRow

SHIPPED = Path(__file__).resolve().parents[2] / "config"


def load(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> Settings:
    (tmp_path / "gestor.toml").write_text(toml, encoding="utf-8")
    return load_settings(tmp_path, environ=environ or {})


def test_the_shipped_config_texts_subscribers_and_has_no_operator_yet() -> None:
    n = load_settings(SHIPPED, environ={}).notifications
    assert n.email.operators == ()
    assert [(r.channel, r.min_severity) for r in n.routes] == [("email", Severity.CRITICAL)]
    # No operator address yet: only the subscriber's texts are routed.
    assert n.route_rows() == [RouteRow("movement", "sms", "", None,
                                       ("refunded", "inconsistent"), 0)]
    assert set(n.sms.templates) == {"refunded", "inconsistent"}
    assert all(set(t) == {"es", "en"} for t in n.sms.templates.values())


def test_routes_become_one_row_per_recipient(tmp_path: Path) -> None:
    n = load(tmp_path, """
[notifications.email]
operators = ["noc@op.example", "boss@op.example"]
[notifications.sms]
events = []
[[notifications.routes]]
channel = "email"
kinds = ["refund_failed", "stuck"]
min_severity = "warning"
[[notifications.routes]]
channel = "sms"
to = ["5491155550000"]
min_severity = "critical"
language = "es"
""").notifications
    assert n.route_rows() == [
        RouteRow("alarm", "email", "noc@op.example", "en", ("refund_failed", "stuck"), 1),
        RouteRow("alarm", "email", "boss@op.example", "en", ("refund_failed", "stuck"), 1),
        RouteRow("alarm", "sms", "5491155550000", "es", (), 2),
    ]


def test_the_smtp_password_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    toml = '[notifications.email]\nusername = "gestor"\n'
    settings = load(tmp_path, toml, {"GESTOR_SMTP_PASSWORD": "s3cret-from-env"})
    assert settings.notifications.email.password == "s3cret-from-env"
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(settings.notifications)
    named = load(tmp_path, toml + 'password_env = "SMTP_PW"\n', {"SMTP_PW": "other"})
    assert named.notifications.email.password == "other"
    (tmp_path / "smtp.pw").write_text("from-a-file\n", encoding="utf-8")
    filed = load(tmp_path, toml + 'password_file = "smtp.pw"\n')
    assert filed.notifications.email.password == "from-a-file"


@pytest.mark.parametrize(("toml", "message"), [
    ('[[notifications.routes]]\nchannel = "email"\nmin_severity = "urgent"\n',
     "notifications.routes[0].min_severity must be one of info, warning, critical, got "
     "'urgent' ({path}, line 3)"),
    ('[[notifications.routes]]\nchannel = "email"\nto = ["a@b.example"]\n'
     '[[notifications.routes]]\nchannel = "fax"\n',
     "notifications.routes[1].channel must be one of email, sms, got 'fax' ({path}, line 5)"),
    ('[[notifications.routes]]\nchannel = "email"\nkinds = ["refund_faild"]\n',
     "notifications.routes[0].kinds: unknown alarm kind 'refund_faild'; the kinds are "
     "charge_unknown, provision_unknown, refund_failed, stuck, platform_down, "
     "platform_recovered, resolved, database_down, database_recovered ({path}, line 3)"),
    ('[[notifications.routes]]\nchannel = "sms"\n',
     "notifications.routes[0].to is required ({path}, line 1)"),
    ('[notifications.email]\nsmtp_port = 70000\n',
     "notifications.email.smtp_port must be a whole number from 1 to 65535, got 70000 "
     "({path}, line 2)"),
    ('[notifications.email]\noperators = ["not an address"]\n',
     "notifications.email.operators[0] is not an e-mail address: 'not an address' "
     "({path}, line 2)"),
    ('[notifications.email]\ntls = "ssl"\n',
     "notifications.email.tls must be one of none, starttls, tls, got 'ssl' ({path}, line 2)"),
    ('[notifications]\nmax_attempts = 0\n',
     "notifications.max_attempts must be a whole number from 1 to 1000, got 0 "
     "({path}, line 2)"),
    ('[notifications]\nretry_backof = 1\n',
     "unknown key 'retry_backof' in [notifications] ({path}, line 2)"),
    ('[notifications.sms.templates.refunded]\nen = "Refunded {amount} {curency}"\n',
     "notifications.sms.templates.refunded.en: unknown placeholder {{curency}}; use "
     "{{amount}}, {{bono}}, {{currency}}, {{kind}}, {{msisdn}}, {{reference}} ({path}, line 2)"),
    ('[notifications.sms]\nevents = ["completed"]\n',
     "notifications.sms.events: 'completed' is not one of refunded, inconsistent "
     "({path}, line 2)"),
    ('[notifications.sms]\nurl = "ftp://sms"\n',
     "notifications.sms.url must be an http(s) URL, got 'ftp://sms' ({path}, line 2)"),
    ('[notifications.email]\npassword_file = "missing.pw"\n',
     "notifications.email.password_file: cannot read {dir}/missing.pw: No such file or "
     "directory ({path}, line 2)"),
])
def test_a_bad_value_is_one_clear_line(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load(tmp_path, toml)
    text = str(refused.value)
    assert "\n" not in text
    assert text == message.format(path=tmp_path / "gestor.toml", dir=tmp_path)


def test_without_routes_critical_alarms_go_to_every_operator(tmp_path: Path) -> None:
    toml = '[notifications.email]\noperators = ["noc@op.example"]\n'
    (default,) = load(tmp_path, toml).notifications.routes
    assert (default.channel, default.to, default.kinds, default.min_severity) == (
        "email", ("noc@op.example",), (), Severity.CRITICAL)
    assert load(tmp_path, "[notifications]\nroutes = []\n" + toml).notifications.routes == ()
