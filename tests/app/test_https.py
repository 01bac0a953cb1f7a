"""--https: the self-signed certificate names this host and is cached; a user-supplied pair is
checked; the page is really served over TLS (a client that trusts only that certificate
fetches it from the loopback address)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl

import httpx
import pytest
from cryptography import x509

from pipecatapp.config import load_config
from pipecatapp.embedded.server import free_port
from pipecatapp.errors import ConfigError
from pipecatapp.transports import tlscert, webrtc


def _san(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), set(
        san.get_values_for_type(x509.IPAddress)
    )


def test_self_signed_names_this_host_and_is_cached(tmp_path):
    pair = tlscert.self_signed(tmp_path)
    names, addresses = _san(pair.cert)
    assert "localhost" in names
    assert tlscert.host_names() <= names
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert tlscert.host_addresses() <= addresses
    assert any(not a.is_loopback for a in addresses)  # the LAN address(es) of this host
    assert pair.key.stat().st_mode & 0o777 == 0o600
    first = pair.cert.read_bytes()
    assert tlscert.self_signed(tmp_path).cert.read_bytes() == first  # reused
    # A host name or address the cached certificate lacks: a new certificate names it.
    again = tlscert.self_signed(tmp_path, extra_names=["voice.home.arpa"],
                                extra_addresses=["10.77.0.5"])
    names, addresses = _san(again.cert)
    assert "voice.home.arpa" in names
    assert ipaddress.ip_address("10.77.0.5") in addresses
    assert again.cert.read_bytes() != first


def test_user_supplied_pair_is_checked(tmp_path):
    a = tlscert.self_signed(tmp_path / "a")
    b = tlscert.self_signed(tmp_path / "b")
    assert tlscert.user_supplied(str(a.cert), str(a.key)) == a
    with pytest.raises(ConfigError, match=r"webrtc\.key: .* is not the key of"):
        tlscert.user_supplied(str(a.cert), str(b.key))
    with pytest.raises(ConfigError, match=r"webrtc\.cert: .* is not a PEM certificate"):
        tlscert.user_supplied(str(a.key), str(a.key))
    with pytest.raises(ConfigError, match=r"webrtc\.cert: cannot read"):
        tlscert.user_supplied(str(tmp_path / "missing.pem"), str(a.key))
    with pytest.raises(ConfigError, match=r"webrtc\.key: .*not an unencrypted PEM private key"):
        tlscert.user_supplied(str(a.cert), str(a.cert))


def test_cert_without_key_names_the_missing_setting():
    with pytest.raises(ConfigError, match=r"^webrtc\.key: give both"):
        load_config(environ={}, overrides={"webrtc.cert": "/etc/ssl/x.pem"})


def test_page_url_on_all_addresses_lists_lan_addresses():
    cfg = load_config(environ={}, overrides={"webrtc.host": "0.0.0.0", "webrtc.port": "8443"})
    urls = webrtc.page_urls(cfg.webrtc, "https")
    assert urls[0] == "https://localhost:8443/"
    lan = [a for a in tlscert.host_addresses() if a.version == 4 and not a.is_loopback]
    assert {f"https://{a}:8443/" for a in lan} <= set(urls)


async def test_page_served_over_https(tmp_path, monkeypatch):
    import uvicorn

    monkeypatch.setenv("PIPECATAPP_CACHE_DIR", str(tmp_path))
    port = free_port()
    cfg = load_config(environ={}, overrides={"webrtc.https": True, "webrtc.port": port})

    async def never(connection: object) -> None:
        raise AssertionError("no session without an offer")

    certfile, keyfile = webrtc.tls_files(cfg.webrtc)
    assert certfile.startswith(str(tmp_path / "tls"))
    server = uvicorn.Server(uvicorn.Config(
        webrtc.build_app(never), host="127.0.0.1", port=port, log_level="warning",
        ssl_certfile=certfile, ssl_keyfile=keyfile,
    ))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        trust = ssl.create_default_context(cafile=certfile)  # only this certificate
        async with httpx.AsyncClient(verify=trust) as client:
            page = await client.get(f"https://127.0.0.1:{port}/client/")
            assert page.status_code == 200
            assert 'id="connect"' in page.text
            assert "default-src 'self'" in page.headers["content-security-policy"]
            with pytest.raises(httpx.TransportError):  # plain HTTP gets no page
                await client.get(f"http://127.0.0.1:{port}/client/", timeout=5)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
