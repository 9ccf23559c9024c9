"""TLS settings: `[server] certfile/keyfile` (relative to the config directory),
GESTOR_CERTFILE/GESTOR_KEYFILE and the options, both or neither; and every problem with the
files refused before anything starts with one line naming the file (`gestor.startup`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gestor.settings import SettingsError, load_settings
from gestor.startup import StartupError, tls_context
from tests.tlscerts import Certificates, make_certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def config(tmp_path: Path, server: str) -> Path:
    directory = tmp_path / "config"
    directory.mkdir(exist_ok=True)
    (directory / "gestor.toml").write_text(f"[server]\n{server}\n", encoding="utf-8")
    return directory


def test_no_tls_by_default(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, ""), environ={})
    assert (settings.certfile, settings.keyfile, settings.scheme) == (None, None, "http")
    assert "GESTOR_CERTFILE" not in settings.environ()
    assert tls_context(settings) is None


def test_file_paths_are_relative_to_the_config_directory(tmp_path: Path) -> None:
    directory = config(tmp_path, 'certfile = "tls/cert.pem"\nkeyfile = "/etc/gestor/key.pem"')
    settings = load_settings(directory, environ={})
    assert settings.certfile == directory / "tls" / "cert.pem"
    assert settings.keyfile == Path("/etc/gestor/key.pem")
    assert settings.scheme == "https"


def test_environment_and_options_override_the_file_and_reach_the_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    directory = config(tmp_path, 'certfile = "a.pem"\nkeyfile = "b.pem"')
    env = {"GESTOR_CERTFILE": "/srv/cert.pem", "GESTOR_KEYFILE": "/srv/key.pem"}
    settings = load_settings(directory, environ=env)
    assert (settings.certfile, settings.keyfile) == (Path("/srv/cert.pem"), Path("/srv/key.pem"))
    settings = load_settings(directory, environ=env, keyfile=Path("rel/key.pem"))
    assert settings.keyfile == Path("rel/key.pem")
    # a worker process loads its settings from this environment, wherever it runs
    exported = settings.environ()
    assert exported["GESTOR_CERTFILE"] == "/srv/cert.pem"
    assert exported["GESTOR_KEYFILE"] == str(tmp_path / "rel" / "key.pem")
    assert load_settings(directory, environ=exported).keyfile == tmp_path / "rel" / "key.pem"


@pytest.mark.parametrize(("server", "env", "options", "missing", "where"), [
    ('certfile = "cert.pem"', {}, {}, "keyfile", "gestor.toml, line 2"),
    ("", {"GESTOR_KEYFILE": "/k.pem"}, {}, "certfile", "GESTOR_KEYFILE"),
    ("", {}, {"certfile": Path("c.pem")}, "keyfile", "--certfile"),
], ids=["file", "environment", "option"])
def test_one_without_the_other_is_refused_naming_where_it_was_given(
        tmp_path: Path, server: str, env: dict[str, str], options: dict[str, Path],
        missing: str, where: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(config(tmp_path, server), environ=env, **options)
    message = str(refused.value)
    assert "\n" not in message
    given = "certfile" if missing == "keyfile" else "keyfile"
    assert message.startswith(f"TLS needs both server.certfile and server.keyfile, only {given} "
                              f"is set; give {missing} with --{missing}, ")
    assert message.endswith(f"{where})"), message


def write_key(path: Path, certificates: Certificates, password: bytes | None) -> Path:
    key = serialization.load_pem_private_key(certificates.keyfile.read_bytes(), None)
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8, encryption))
    return path


def refusal(tmp_path: Path, certfile: Path, keyfile: Path) -> str:
    settings = load_settings(config(tmp_path, ""), environ={}, certfile=certfile,
                             keyfile=keyfile)
    with pytest.raises(StartupError) as refused:
        tls_context(settings)
    assert refused.value.status == 2
    text = str(refused.value)
    assert "\n" not in text
    return text


def test_good_files_make_a_context(tmp_path: Path, certificates: Certificates) -> None:
    settings = load_settings(config(tmp_path, ""), environ={}, certfile=certificates.certfile,
                             keyfile=certificates.keyfile)
    assert tls_context(settings) is not None


def test_a_missing_certificate_is_named(tmp_path: Path, certificates: Certificates) -> None:
    missing = tmp_path / "nope.pem"
    assert refusal(tmp_path, missing, certificates.keyfile) == (
        f"cannot read the TLS certificate: no such file or directory ({missing})")


def test_an_unreadable_key_is_named(tmp_path: Path, certificates: Certificates) -> None:
    assert refusal(tmp_path, certificates.certfile, tmp_path) == (
        f"cannot read the TLS key: is a directory ({tmp_path})")


def test_a_certificate_file_without_a_certificate_is_named(
        tmp_path: Path, certificates: Certificates) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert refusal(tmp_path, garbage, certificates.keyfile) == (
        f"the TLS certificate file holds no PEM certificate ({garbage})")
    # a key where the certificate should be
    assert refusal(tmp_path, certificates.keyfile, certificates.keyfile) == (
        f"the TLS certificate file holds no PEM certificate ({certificates.keyfile})")


def test_a_key_file_without_a_key_is_named(tmp_path: Path, certificates: Certificates) -> None:
    assert refusal(tmp_path, certificates.certfile, certificates.certfile) == (
        f"the TLS key file holds no PEM private key ({certificates.certfile})")


def test_a_key_of_another_certificate_is_refused(tmp_path: Path,
                                                 certificates: Certificates) -> None:
    other = make_certificates(tmp_path / "other")
    assert refusal(tmp_path, certificates.certfile, other.keyfile) == (
        "the TLS key does not match the certificate "
        f"({other.keyfile}, certificate {certificates.certfile})")


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(
        tmp_path: Path, certificates: Certificates) -> None:
    encrypted = write_key(tmp_path / "encrypted.pem", certificates, b"secret")
    text = refusal(tmp_path, certificates.certfile, encrypted)
    assert text == ("the TLS key is encrypted: give it unencrypted (readable by Gestor's user "
                    f"only) ({encrypted})")
    assert "secret" not in text
