"""The HTTPS certificate of the browser client: a user-supplied PEM pair, or a self-signed
certificate generated once and cached in ``<cache>/tls/``.

Browsers allow the microphone only on ``https://`` pages (or ``http://localhost``), so a
phone or laptop on the LAN needs TLS. The self-signed certificate names ``localhost``, this
host's name and every address of its interfaces; when the host gains a name or an address
the certificate does not cover, or it is within a week of expiring, a new one replaces it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipecatapp.errors import ConfigError, EngineUnavailable

VALID_DAYS = 397  # browsers refuse longer-lived server certificates
RENEW_BEFORE = datetime.timedelta(days=7)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def host_names() -> set[str]:
    """``localhost`` and the names this host calls itself."""
    names = {"localhost", socket.gethostname()}
    fqdn = socket.getfqdn()
    if fqdn:
        names.add(fqdn)
    return {n for n in names if n and not _is_address(n)}


def host_addresses() -> set[IPAddress]:
    """Loopback and every address of this host's interfaces (IPv6 link-local left out:
    a URL cannot use it without a zone)."""
    found: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        import ifaddr  # comes with aiortc (through aioice)

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                found.add(ipaddress.ip_address(raw))
    except ImportError:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ipaddress.ip_address(info[4][0]))
    return {a for a in found if not (a.version == 6 and a.is_link_local)}


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _covers(cert_path: Path, names: set[str], addresses: set[IPAddress]) -> bool:
    """Whether the cached certificate names all of these and is not about to expire."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    have_names = set(san.get_values_for_type(x509.DNSName))
    have_addresses = set(san.get_values_for_type(x509.IPAddress))
    return names <= have_names and addresses <= have_addresses


def _generate(names: Iterable[str], addresses: Iterable[IPAddress]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "homevoice on " + socket.gethostname()),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "homevoice (self-signed)"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    alt_names += [x509.IPAddress(a) for a in sorted(addresses, key=str)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def self_signed(
    directory: Path, *, extra_names: Iterable[str] = (), extra_addresses: Iterable[str] = ()
) -> CertPair:
    """The cached self-signed pair in ``directory``, made (again) when missing, expiring,
    or not naming this host's current names and addresses (plus the extra ones)."""
    names = host_names() | {n for n in extra_names if n and not _is_address(n)}
    addresses = host_addresses()
    for a in extra_addresses:
        if a and _is_address(a) and not ipaddress.ip_address(a).is_unspecified:
            addresses.add(ipaddress.ip_address(a))
    pair = CertPair(directory / "homevoice-cert.pem", directory / "homevoice-key.pem")
    if pair.key.is_file() and _covers(pair.cert, names, addresses):
        return pair
    try:
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = _generate(names, addresses)
        fd = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        pair.cert.write_bytes(cert_pem)
    except OSError as e:
        raise EngineUnavailable(
            f"cannot write the HTTPS certificate to {directory}: {e.strerror or e} "
            "(set PIPECATAPP_CACHE_DIR, or give webrtc.cert and webrtc.key)"
        ) from None
    return pair


def user_supplied(cert: str, key: str) -> CertPair:
    """A PEM certificate (chain) and its private key given by the user, checked to load."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not cert or not key:
        missing = "webrtc.key" if cert else "webrtc.cert"
        raise ConfigError(missing, "give both webrtc.cert and webrtc.key (PEM files), or neither")
    pair = CertPair(Path(cert).expanduser(), Path(key).expanduser())
    try:
        certificate = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    except OSError as e:
        raise ConfigError("webrtc.cert", f"cannot read {pair.cert}: {e.strerror or e}") from None
    except ValueError:
        raise ConfigError("webrtc.cert", f"{pair.cert} is not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    except OSError as e:
        raise ConfigError("webrtc.key", f"cannot read {pair.key}: {e.strerror or e}") from None
    except (ValueError, TypeError):
        raise ConfigError(
            "webrtc.key", f"{pair.key} is not an unencrypted PEM private key"
        ) from None
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private_key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(
        *spki
    ):
        raise ConfigError("webrtc.key", f"{pair.key} is not the key of {pair.cert}")
    return pair
