"""The sandbox's PKI, generated at `sandbox up` with the `cryptography` package.

One CA signs everything: the API server's serving certificate, the client
certificates of the admin and the restricted user, and the sshd host keys are
separate (see sshd.py). A separate key signs service-account tokens.
ECDSA P-256 keys keep generation fast (milliseconds, not the seconds RSA takes).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "sandbox-admin"
ADMIN_GROUP = "system:masters"
RESTRICTED_USER = "godebug-operator"
# The API server's client identity towards the node runtimes' kubelet API (exec).
# The kubelet API admits this one name only: every sandbox user's certificate
# chains to the same CA, and none of them may bypass RBAC by calling a node directly.
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
# The API server's first service IP (10.96.0.1 for --service-cluster-ip-range=10.96.0.0/16).
SERVICE_IP = "10.96.0.1"
_VALID = dt.timedelta(days=365)


@dataclass(frozen=True)
class PkiPaths:
    """Where the PEM files live inside the state directory."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def kubelet_serving_crt(self, node: str) -> Path:
        return self.dir / f"kubelet-{node}.crt"

    def kubelet_serving_key(self, node: str) -> Path:
        return self.dir / f"kubelet-{node}.key"

    def client_crt(self, user: str) -> Path:
        return self.dir / f"{user}.crt"

    def client_key(self, user: str) -> Path:
        return self.dir / f"{user}.key"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _now() -> dt.datetime:
    # Back-date by a minute so a slightly skewed reader never sees "not yet valid".
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def _key_usage(ca: bool) -> x509.KeyUsage:
    """Signing only; a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=False,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    usage: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + _VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def generate(pki: PkiPaths, users: list[tuple[str, str | None]]) -> None:
    """Write a fresh CA, serving cert, SA key pair and one client cert per user.

    Args:
        pki: where to write.
        users: (common name, organization or None) per client certificate.
    """
    pki.dir.mkdir(parents=True, exist_ok=True)
    pki.dir.chmod(0o700)
    ca_key = _new_key()
    ca_name = _name("go-k8s-debug-sandbox-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.ca_crt, ca_cert.public_bytes(serialization.Encoding.PEM))

    srv_key = _new_key()
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
    ]
    srv = _issue(
        ca_key, ca_cert, _name("kube-apiserver"), srv_key, [ExtendedKeyUsageOID.SERVER_AUTH], sans
    )
    _write(pki.apiserver_key, _key_pem(srv_key), private=True)
    _write(pki.apiserver_crt, srv.public_bytes(serialization.Encoding.PEM))

    sa_key = _new_key()
    _write(pki.sa_key, _key_pem(sa_key), private=True)
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )

    for cn, org in [*users, (KUBELET_CLIENT_USER, None)]:
        key = _new_key()
        crt = _issue(ca_key, ca_cert, _name(cn, org), key, [ExtendedKeyUsageOID.CLIENT_AUTH])
        _write(pki.client_key(cn), _key_pem(key), private=True)
        _write(pki.client_crt(cn), crt.public_bytes(serialization.Encoding.PEM))


def _load_ca(pki: PkiPaths) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())


def issue_kubelet_serving(pki: PkiPaths, node: str, ip: str) -> tuple[Path, Path]:
    """Write a serving certificate for a node's kubelet API at ``ip``; return (crt, key).

    The API server checks it against the CA (``--kubelet-certificate-authority``)
    and the node's InternalIP, as it does a real kubelet's.
    """
    ca_key, ca_cert = _load_ca(pki)
    key = _new_key()
    sans: list[x509.GeneralName] = [
        x509.DNSName(node),
        x509.IPAddress(ipaddress.ip_address(ip)),
    ]
    crt = _issue(
        ca_key, ca_cert, _name(f"system:node:{node}", "system:nodes"), key,
        [ExtendedKeyUsageOID.SERVER_AUTH], sans,
    )
    _write(pki.kubelet_serving_key(node), _key_pem(key), private=True)
    _write(pki.kubelet_serving_crt(node), crt.public_bytes(serialization.Encoding.PEM))
    return pki.kubelet_serving_crt(node), pki.kubelet_serving_key(node)
