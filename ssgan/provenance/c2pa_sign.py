"""Optional C2PA content credentials: a signed manifest in the PNG, JPEG, WebP, GIF or mp4 files
ssgan writes, made with the user's own certificate (c2pa-python, the ``c2pa`` extra).

What a manifest says: one ``c2pa.actions`` assertion, ``c2pa.created`` with the IPTC digital
source type (:data:`ssgan.provenance.record.TRAINED`) for a generated picture; for an edit of a
user's photo, the photo as a ``parentOf`` ingredient (its hash, no thumbnail), ``c2pa.opened`` of
it and ``c2pa.edited`` with :data:`~ssgan.provenance.record.COMPOSITE`; both name ssgan as the
software agent. A second assertion, ``ssgan.provenance``, holds the
:class:`~ssgan.provenance.record.Provenance` record. The claim is signed with the key; the file's
bytes are bound to it by a hash, so a changed pixel makes the manifest invalid.

Offline by design: no time-stamp authority (``ta_url`` is None), no OCSP and no remote-manifest
fetch, no trust list downloaded. The price of no time stamp: the signature is checked against the
certificate's validity *now*, so it reads as expired once the certificate has expired.

C2PA refuses self-signed and CA certificates as signers: the chain file holds the signing
(end-entity) certificate first, then its intermediates (the root may follow); the signing
certificate carries one of :data:`C2PA_EKUS` and the digitalSignature key usage. Algorithms, by
key: EC P-256/384/521 → ES256/384/512, Ed25519 → Ed25519, RSA → PS256. Every problem with the
files is a :class:`C2PAError` of one line naming the file and the fix, found before any output is
touched (:meth:`C2PASigner.from_files`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ssgan.provenance.record import Provenance

#: Environment variables read when the flags are not given.
CERT_ENV, KEY_ENV, TRUST_ENV = "SSGAN_C2PA_CERT", "SSGAN_C2PA_KEY", "SSGAN_C2PA_TRUST"

#: Extended key usages that C2PA validators accept on a signing certificate: emailProtection,
#: documentSigning, timeStamping, OCSPSigning, Microsoft's C2PA signing, c2pa-kp-claimSigning.
C2PA_EKUS: dict[str, str] = {
    "1.3.6.1.5.5.7.3.4": "emailProtection", "1.3.6.1.5.5.7.3.36": "documentSigning",
    "1.3.6.1.5.5.7.3.8": "timeStamping", "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "1.3.6.1.4.1.311.76.59.1.9": "Microsoft C2PA signing", "1.3.6.1.4.1.62558.2.1": "c2pa claimSigning"}

#: File suffix → MIME type of the formats signed and read here.
MIME: dict[str, str] = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                        ".webp": "image/webp", ".gif": "image/gif", ".mp4": "video/mp4"}

#: The c2pa settings shared by signing and reading: nothing fetched over the network.
OFFLINE: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}

#: The label of the assertion that holds the :class:`Provenance` record.
PROVENANCE_LABEL = "ssgan.provenance"


class C2PAError(Exception):
    """A certificate, key or file that cannot be used for C2PA: one line naming it and the fix."""


def c2pa_module() -> ModuleType:
    """c2pa-python, imported only when credentials are used; missing, a :class:`C2PAError`."""
    try:
        import c2pa
    except ImportError:
        raise C2PAError("C2PA signing and reading need the c2pa-python package: "
                        "pip install 'ssgan[c2pa]'") from None
    return c2pa


def mime_type(path: Path) -> str:
    """The MIME type of ``path`` by its suffix, or a :class:`C2PAError` listing those supported."""
    try:
        return MIME[path.suffix.lower()]
    except KeyError:
        raise C2PAError(f"{path}: C2PA manifests are written into {', '.join(sorted(MIME))} files, "
                        f"not {path.suffix or 'files without a suffix'}") from None


# ----- checking the certificate and the key ---------------------------------------------------------
def _read(path: Path, what: str, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise C2PAError(f"{path}: cannot read the {what} ({e.strerror or e}); give {flag} a readable "
                        f"PEM file") from None


def parse_chain(data: bytes, path: Path) -> list[Any]:
    """The certificates of the PEM chain ``data`` read from ``path``, signing certificate first (a
    :class:`C2PAError` when it holds none)."""
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise C2PAError(f"{path}: not a PEM certificate chain; give --c2pa-cert the signing certificate "
                        f"then its intermediates, each '-----BEGIN CERTIFICATE-----'")
    return chain


def parse_key(data: bytes, path: Path) -> Any:
    """The private key of the PEM ``data`` read from ``path`` (unencrypted), or a :class:`C2PAError`."""
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        hint = ("it is encrypted: decrypt it, e.g. openssl pkey -in KEY -out KEY.pem"
                if "encrypted" in str(e).lower() or "password" in str(e).lower()
                else "give --c2pa-key an unencrypted PEM private key ('-----BEGIN PRIVATE KEY-----')")
        raise C2PAError(f"{path}: not a usable private key; {hint}") from None


def algorithm(key: Any, path: Path) -> str:
    """The C2PA signing algorithm of ``key``: es256/es384/es512, ed25519 or ps256."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in curves:
            return curves[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "ps256"
    raise C2PAError(f"{path}: C2PA signs with EC P-256/P-384/P-521, Ed25519 or RSA >= 2048 bit keys; "
                    f"make the key with one of them")


def _public(key_or_cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key_or_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def check_chain(chain: list[Any], key: Any, cert_path: Path, key_path: Path,
                now: dt.datetime | None = None) -> None:
    """A :class:`C2PAError` unless the key belongs to the chain's first certificate, every
    certificate is valid ``now``, each is issued by the next, and the first is an end-entity
    certificate with a C2PA extended key usage and the digitalSignature key usage."""
    from cryptography import x509

    now = now or dt.datetime.now(dt.timezone.utc)
    leaf = chain[0]
    if _public(leaf) != _public(key):
        raise C2PAError(f"{key_path}: this key does not match the signing certificate of {cert_path} "
                        f"(the first one in it); give --c2pa-key the key the certificate was issued for")
    for cert in chain:
        subject = cert.subject.rfc4514_string()
        if cert.not_valid_after_utc < now:
            raise C2PAError(f"{cert_path}: the certificate {subject} expired on "
                            f"{cert.not_valid_after_utc:%Y-%m-%d}; renew it with your CA")
        if cert.not_valid_before_utc > now:
            raise C2PAError(f"{cert_path}: the certificate {subject} is not valid before "
                            f"{cert.not_valid_before_utc:%Y-%m-%d}; check the clock or the certificate")
    for cert, issuer in zip(chain, chain[1:]):
        if cert.issuer != issuer.subject:
            raise C2PAError(f"{cert_path}: {cert.subject.rfc4514_string()} is not issued by the next "
                            f"certificate in the file; order it signing certificate, intermediates, root")

    def extension(kind: type) -> Any:
        with contextlib.suppress(x509.ExtensionNotFound):
            return leaf.extensions.get_extension_for_class(kind).value
        return None

    basic = extension(x509.BasicConstraints)
    if leaf.issuer == leaf.subject or (basic is not None and basic.ca):
        raise C2PAError(f"{cert_path}: the signing certificate is a self-signed or CA certificate, which "
                        f"C2PA refuses; sign with an end-entity certificate that your CA issued")
    eku = extension(x509.ExtendedKeyUsage)
    if eku is None or not {u.dotted_string for u in eku} & set(C2PA_EKUS):
        raise C2PAError(f"{cert_path}: the signing certificate lacks a C2PA extended key usage; issue it "
                        f"with one of {', '.join(sorted(set(C2PA_EKUS.values())))}")
    usage = extension(x509.KeyUsage)
    if usage is not None and not usage.digital_signature:
        raise C2PAError(f"{cert_path}: the signing certificate's key usage lacks digitalSignature; "
                        f"reissue it with digitalSignature")


# ----- signing ----------------------------------------------------------------------------------------
def _agent(software: str) -> dict[str, str]:
    name, _, version = software.partition(" ")
    return {"name": name, "version": version} if version else {"name": name}


def manifest(path: Path, prov: Provenance, ingredient: Path | None) -> dict[str, Any]:
    """The manifest definition of ``path``: created (no ingredient) or opened + edited (an
    ingredient: the photo it was made from), with the digital source type and the record."""
    action: dict[str, Any] = {"digitalSourceType": prov.source_type, "softwareAgent": _agent(prov.software),
                              "parameters": {"ssgan.action": prov.action}}
    if ingredient is None:
        actions = [{"action": "c2pa.created", **action}]
    else:
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["photo"]}},
                   {"action": "c2pa.edited", **action}]
    return {"title": path.name, "claim_generator_info": [_agent(prov.software)],
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                           {"label": PROVENANCE_LABEL, "data": prov.to_dict()}]}


@dataclass(frozen=True)
class C2PASigner:
    """A checked certificate chain and key (:meth:`from_files`, :meth:`from_env`) that signs
    files in place (:meth:`sign`)."""

    cert_path: Path
    key_path: Path
    algorithm: str
    chain_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)

    @classmethod
    def from_files(cls, cert_chain: str | os.PathLike, key: str | os.PathLike,
                   now: dt.datetime | None = None) -> C2PASigner:
        """Read and check the PEM chain and key (:func:`check_chain`); c2pa-python must be
        installed. Every problem: a :class:`C2PAError`, before anything is written."""
        cert_path, key_path = Path(cert_chain), Path(key)
        c2pa_module()
        chain_pem = _read(cert_path, "certificate chain", "--c2pa-cert")
        key_pem = _read(key_path, "private key", "--c2pa-key")
        private = parse_key(key_pem, key_path)
        alg = algorithm(private, key_path)
        check_chain(parse_chain(chain_pem, cert_path), private, cert_path, key_path, now)
        return cls(cert_path, key_path, alg, chain_pem, key_pem)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> C2PASigner | None:
        """The signer of ``$SSGAN_C2PA_CERT`` and ``$SSGAN_C2PA_KEY``, None when neither is set."""
        env = os.environ if environ is None else environ
        cert, key = env.get(CERT_ENV), env.get(KEY_ENV)
        if not cert and not key:
            return None
        if not (cert and key):
            given, missing = (CERT_ENV, KEY_ENV) if cert else (KEY_ENV, CERT_ENV)
            raise C2PAError(f"{given} is set but {missing} is not; set both (certificate chain and key) "
                            f"or neither")
        return cls.from_files(cert, key)

    def sign(self, path: str | os.PathLike, prov: Provenance, ingredient: str | os.PathLike | None = None
             ) -> None:
        """Embed a signed manifest (:func:`manifest`) in the file at ``path``: written to a temporary
        file in its folder, then renamed over it, so ``path`` is either the old file or the signed
        one. ``ingredient``: the user's photo an edit was made from (hashed into the manifest)."""
        c2pa = c2pa_module()
        path = Path(path)
        mime = mime_type(path)
        photo = None if ingredient is None else Path(ingredient)
        definition = manifest(path, prov, photo)
        info = c2pa.C2paSignerInfo(getattr(c2pa.C2paSigningAlg, self.algorithm.upper()), self.chain_pem,
                                   self.key_pem, None)  # no time-stamp authority: offline
        settings = {**OFFLINE, "builder": {"thumbnail": {"enabled": False}}}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".c2pa.tmp")
        os.close(fd)
        try:
            with c2pa.Signer.from_info(info) as signer, \
                    c2pa.Builder(definition, c2pa.Context.from_dict(settings)) as builder:
                if photo is not None:
                    with _opened(photo, "ingredient photo") as f:
                        builder.add_ingredient({"title": photo.name, "relationship": "parentOf",
                                                "label": "photo"}, mime_type(photo), f)
                with _opened(path, "file to sign") as src, open(tmp, "w+b") as dst:
                    builder.sign(signer, mime, src, dst)
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
        except c2pa.C2paError as e:
            reason = " ".join(str(e).split())
            raise C2PAError(f"{path}: C2PA signing with {self.cert_path} failed ({reason}); "
                            f"check that the key and chain belong together and the file is intact") from None
        finally:
            Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def _opened(path: Path, what: str):
    try:
        f = path.open("rb")
    except OSError as e:
        raise C2PAError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    with f:
        yield f


# ----- reading -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestReport:
    """What a file's active C2PA manifest says and whether it holds.

    ``valid``: the signature verifies and the file's bytes match the signed hash (state Valid or
    Trusted); ``trusted``: besides, the chain ends in a trusted root (the C2PA trust list or the
    ``trust`` PEM given to :func:`read_manifest`); ``errors``: the validation failures
    (``code: explanation``) other than an untrusted signer; ``actions``: the action names;
    ``source_type``: the digital source type of the creating or editing action; ``signer``: the
    certificate's common name and organisation; ``provenance``: the ssgan record, when present."""

    valid: bool
    trusted: bool
    actions: list[str]
    source_type: str | None
    errors: list[str]
    signer: str | None = None
    ingredients: list[str] = field(default_factory=list)
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "trusted": self.trusted, "actions": self.actions,
                "source_type": self.source_type, "errors": self.errors, "signer": self.signer,
                "ingredients": self.ingredients,
                "provenance": None if self.provenance is None else self.provenance.to_dict()}


def _reader_settings(trust: Path | None) -> dict[str, Any]:
    settings: dict[str, Any] = dict(OFFLINE)
    if trust is not None:
        try:
            settings["trust"] = {"user_anchors": trust.read_text()}
        except (OSError, UnicodeDecodeError) as e:
            raise C2PAError(f"{trust}: cannot read the trusted roots ({e}); give a PEM file of CA "
                            f"certificates") from None
    return settings


def read_manifest(path: str | os.PathLike, trust: str | os.PathLike | None = None) -> ManifestReport | None:
    """Read and validate the C2PA manifest of ``path`` (offline), None when it has none.

    ``trust``: a PEM file of root certificates trusted besides the C2PA trust list (default
    ``$SSGAN_C2PA_TRUST`` when set). A file that cannot be read or parsed: a :class:`C2PAError`."""
    c2pa = c2pa_module()
    path = Path(path)
    trust = trust or os.environ.get(TRUST_ENV) or None
    settings = _reader_settings(None if trust is None else Path(trust))
    if not path.is_file():
        raise C2PAError(f"{path}: no such file")
    try:
        with c2pa.Reader(path, context=c2pa.Context.from_dict(settings)) as reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}
    except c2pa.C2paError as e:
        if type(e).__name__.endswith("ManifestNotFound"):
            return None
        raise C2PAError(f"{path}: cannot read its C2PA data ({' '.join(str(e).split())}); is the file "
                        f"complete?") from None
    return _report(state, results, active)


def _report(state: str | None, results: dict[str, Any], active: dict[str, Any]) -> ManifestReport:
    failures = results.get("activeManifest", {}).get("failure", [])
    errors = [f"{f['code']}: {f.get('explanation', '')}".rstrip(": ") for f in failures
              if f.get("code") != "signingCredential.untrusted"]
    actions: list[dict[str, Any]] = []
    record = None
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions += assertion.get("data", {}).get("actions", [])
        elif assertion.get("label") == PROVENANCE_LABEL:
            with contextlib.suppress(TypeError):
                record = Provenance.from_dict(assertion.get("data", {}))
    source = next((a["digitalSourceType"] for a in actions if "digitalSourceType" in a), None)
    info = active.get("signature_info", {})
    signer = ", ".join(v for v in (info.get("common_name"), info.get("issuer")) if v) or None
    return ManifestReport(valid=state in ("Valid", "Trusted"), trusted=state == "Trusted",
                          actions=[a.get("action", "") for a in actions], source_type=source,
                          errors=errors, signer=signer,
                          ingredients=[i.get("title", "") for i in active.get("ingredients", [])],
                          provenance=record)
