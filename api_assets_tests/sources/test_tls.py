"""The `tls`, `proxy` and `http2` settings of a source: what loads, and each mistake in the files
they name (a CA bundle that is not one, a key that is not the certificate's, a wrong password) as
a `file:line: key.path: message` line of `api-assets validate`, never showing a password."""

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from api_assets.config.loader import load_sources
from api_assets.errors import SourcesError
from api_assets.http.redact import Redactor, shown_proxy
from api_assets_tests.pki import KEY_PASSWORD, Pki, make_pki

# Lines: 1 sources, 2 name, 3 base_url, 4 tls, 5.. its keys.
HEAD = "sources:\n  - name: shop\n    base_url: https://127.0.0.1:8765\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def problems(path: Path, environ: dict[str, str]) -> list[tuple[int, str, str]]:
    with pytest.raises(SourcesError) as caught:
        load_sources(path, environ=environ)
    text = str(caught.value)
    for secret in environ.values():
        assert secret not in text
    return [(p.line, p.key_path, p.message) for p in caught.value.problems]


def test_every_setting_loads(write: Callable[..., Path], pki: Pki) -> None:
    path = write(
        HEAD + "    tls:\n"
        f"      verify: {pki.ca}\n"
        f"      client_cert: {pki.client_cert}\n"
        f"      client_key: {pki.client_key}\n"
        "      client_key_password: ${KEY_PASSWORD}\n"
        "    proxy: http://robot:${PROXY_PASSWORD}@127.0.0.1:3128\n"
        "    http2: true\n"
    )
    # a password with URL special characters is written percent-encoded, as in any URL
    environ = {"KEY_PASSWORD": KEY_PASSWORD, "PROXY_PASSWORD": "p%40ss-w0rd"}
    (source,) = load_sources(path, environ=environ)
    assert source.tls.verify == str(pki.ca)
    assert source.tls.key_password == KEY_PASSWORD
    assert source.proxy == SecretStr("http://robot:p%40ss-w0rd@127.0.0.1:3128")
    assert source.http2 is True
    for secret in environ.values():
        assert secret not in repr(source)
    redactor = Redactor.for_source(source)
    assert redactor.text(f"{KEY_PASSWORD} p%40ss-w0rd p@ss-w0rd") == "*** *** ***"


def test_defaults_and_words_from_the_environment(write: Callable[..., Path]) -> None:
    path = write(HEAD + "    tls: {verify: '${VERIFY:-true}'}\n")
    (source,) = load_sources(path, environ={})
    assert source.tls.verify is True and source.proxy is None and source.http2 is False
    (source,) = load_sources(path, environ={"VERIFY": "False"})
    assert source.tls.verify is False


def test_a_wrong_password_a_foreign_key_and_a_bad_bundle_are_each_a_line(
    write: Callable[..., Path], pki: Pki
) -> None:
    path = write(
        HEAD + "    tls:\n"
        f"      verify: {pki.client_key_plain}\n"  # a key, not a CA bundle
        f"      client_cert: {pki.client_cert}\n"
        f"      client_key: {pki.client_key}\n"
        "      client_key_password: ${KEY_PASSWORD}\n"
        "  - name: crm\n"
        "    base_url: https://127.0.0.1:8765\n"
        "    tls:\n"
        f"      client_cert: {pki.client_cert}\n"
        f"      client_key: {pki.server_key}\n"  # another certificate's key
        "  - name: erp\n"
        "    base_url: https://127.0.0.1:8765\n"
        "    tls:\n"
        f"      client_cert: {pki.client_cert}\n"
        f"      client_key: {pki.client_key}\n"  # encrypted, and no password given
        "  - name: ops\n"
        "    base_url: https://127.0.0.1:8765\n"
        "    tls:\n"
        f"      client_cert: {pki.ca}\n"  # a certificate without its key
    )
    assert problems(path, {"KEY_PASSWORD": "not-the-password-0f9e"}) == [
        (5, "sources.shop.tls.verify", "not a CA bundle: expected PEM certificates (-----BEGIN CERTIFICATE-----)"),
        (8, "sources.shop.tls.client_key_password", "this password does not decrypt the private key"),
        (13, "sources.crm.tls.client_key", "the private key does not belong to `client_cert`"),
        (18, "sources.erp.tls.client_key", "the private key is encrypted: give `client_key_password` (as ${VAR})"),
        (22, "sources.ops.tls.client_cert", "no usable private key: expected PEM (-----BEGIN PRIVATE KEY-----)"),
    ]  # fmt: skip


def test_the_key_password_comes_from_the_environment_only(
    write: Callable[..., Path], pki: Pki
) -> None:
    tls = f"    tls:\n      client_cert: {pki.client_cert}\n      client_key: {pki.client_key}\n"
    for written in (KEY_PASSWORD, "${KEY_PASSWORD:-" + KEY_PASSWORD + "}", "pre-${KEY_PASSWORD}"):
        path = write(HEAD + tls + f"      client_key_password: '{written}'\n")
        assert problems(path, {"KEY_PASSWORD": KEY_PASSWORD}) == [
            (
                7,
                "sources.shop.tls.client_key_password",
                "`client_key_password` is a secret: write ${VAR} and set VAR in the environment,"
                " never the value itself (nor a default)",
            )
        ]
    # an unset variable is named once, and the key is not then said to be wrong
    path = write(HEAD + tls + "      client_key_password: ${KEY_PASSWORD}\n")
    assert problems(path, {}) == [
        (
            7,
            "sources.shop.tls.client_key_password",
            "environment variable KEY_PASSWORD is not set (use ${KEY_PASSWORD:-default} or set it)",
        )
    ]


def test_a_relative_path_is_taken_from_the_current_folder(
    write: Callable[..., Path], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pki.ca.parent)
    (source,) = load_sources(write(HEAD + f"    tls: {{verify: {pki.ca.name}}}\n"), environ={})
    assert source.tls.verify == pki.ca.name


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://proxy.internal:3128", "http://proxy.internal:3128"),
        ("http://robot:s3cret@proxy:3128", "http://robot:***@proxy:3128"),
        ("https://robot@proxy", "https://robot@proxy"),
    ],
)
def test_a_proxy_is_shown_without_its_password(url: str, shown: str) -> None:
    assert shown_proxy(url) == shown
