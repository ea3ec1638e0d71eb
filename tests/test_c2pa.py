"""C2PA content credentials with a certificate chain made here (root CA → intermediate → signing
certificate): sign → read → validate → tamper → invalid, for generated pictures and for edits of a
photo; a wrong, expired or mismatched certificate or key is one line naming the file, before
anything is written."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("c2pa", reason="c2pa-python is not installed: pip install 'ssgan[c2pa]'")
from cryptography import x509  # noqa: E402  (c2pa-python depends on it)
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from ssgan.provenance.c2pa_sign import C2PAError, C2PASigner, read_manifest  # noqa: E402
from ssgan.provenance.record import COMPOSITE, TRAINED, Provenance  # noqa: E402

NOW = dt.datetime.now(dt.timezone.utc)
GENERATED = Provenance(TRAINED, "generate", "ssgan 0.1.0", "ab" * 32)
EDITED = Provenance(COMPOSITE, "edit", "ssgan 0.1.0", "cd" * 32, key_id=7)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ssgan tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool, eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
          days: tuple[int, int] = (-1, 30)) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW + dt.timedelta(days=days[0])).not_valid_after(NOW + dt.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=1 if ca else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                        critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(issuer_key, algorithm)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def make_chain(folder: Path, key_type: str = "ec", **leaf) -> tuple[Path, Path, Path]:
    """root CA → intermediate → signing certificate (``leaf``: _cert options); writes chain.pem
    (signing certificate, intermediate), key.pem and root.pem; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)

    def new():
        return (ec.generate_private_key(ec.SECP256R1()) if key_type == "ec"
                else ed25519.Ed25519PrivateKey.generate())

    root_key, inter_key, key = new(), new(), new()
    root = _cert("test root", root_key, "test root", root_key, ca=True, days=(-1, 3650))
    inter = _cert("test intermediate", inter_key, "test root", root_key, ca=True, days=(-1, 3650))
    signing = _cert("ssgan signer", key, "test intermediate", inter_key, ca=False, **leaf)
    paths = folder / "chain.pem", folder / "key.pem", folder / "root.pem"
    paths[0].write_bytes(_pem(signing, inter))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(_pem(root))
    return paths


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, Path, Path]:
    return make_chain(tmp_path_factory.mktemp("pki"))


def _image(path: Path, seed: int = 0, size: int = 48) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def tamper_png(path: Path) -> None:
    """Change one pixel byte inside the (8-bit RGB) PNG's image data, not a row's filter byte (a
    valid PNG still: CRC recomputed)."""
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    pos = 8
    while data[pos + 4:pos + 8] != b"IDAT":
        pos += 12 + struct.unpack(">I", data[pos:pos + 4])[0]
    n = struct.unpack(">I", data[pos:pos + 4])[0]
    raw = bytearray(zlib.decompress(data[pos + 8:pos + 8 + n]))
    raw[(1 + 3 * width) * (height // 2) + 1] ^= 0x40  # the middle row's first red byte
    body = zlib.compress(bytes(raw))
    chunk = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    path.write_bytes(data[:pos] + chunk + data[pos + 12 + n:])


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
def test_sign_read_validate_tamper(tmp_path, key_type):
    cert, key, root = make_chain(tmp_path / "pki", key_type)
    signer = C2PASigner.from_files(cert, key)
    assert signer.algorithm == {"ec": "es256", "ed25519": "ed25519"}[key_type]
    out = _image(tmp_path / "sample.png")
    pixels = np.asarray(Image.open(out))
    assert read_manifest(out) is None  # nothing before signing
    signer.sign(out, GENERATED)
    assert np.array_equal(np.asarray(Image.open(out)), pixels)  # the pixels are untouched

    report = read_manifest(out, trust=root)
    assert report.valid and report.trusted, report
    assert report.actions == ["c2pa.created"] and report.source_type == TRAINED
    assert report.provenance == GENERATED and report.errors == []
    assert report.signer == "ssgan signer, ssgan tests"
    untrusted = read_manifest(out)  # the test root is in no trust list: valid, not trusted
    assert untrusted.valid and not untrusted.trusted

    tamper_png(out)
    tampered = read_manifest(out, trust=root)
    assert not tampered.valid and not tampered.trusted
    assert any(e.startswith("assertion.dataHash.mismatch") for e in tampered.errors), tampered.errors


def test_an_edit_names_its_photo_as_ingredient(tmp_path, chain):
    cert, key, root = chain
    photo = _image(tmp_path / "photo.jpg", seed=1)
    out = _image(tmp_path / "edit.jpg", seed=2)
    C2PASigner.from_files(cert, key).sign(out, EDITED, ingredient=photo)
    report = read_manifest(out, trust=root)
    assert report.valid and report.trusted
    assert report.actions == ["c2pa.opened", "c2pa.edited"] and report.source_type == COMPOSITE
    assert report.ingredients == ["photo.jpg"] and report.provenance == EDITED
    data = bytearray(out.read_bytes())
    data[-200] ^= 0xFF  # inside the JPEG's entropy-coded pixels
    out.write_bytes(bytes(data))
    assert not read_manifest(out, trust=root).valid


def test_trust_from_the_environment(tmp_path, chain, monkeypatch):
    cert, key, root = chain
    out = _image(tmp_path / "a.png")
    C2PASigner.from_files(cert, key).sign(out, GENERATED)
    monkeypatch.setenv("SSGAN_C2PA_TRUST", str(root))
    assert read_manifest(out).trusted


@pytest.mark.parametrize("case, says, names", [
    ("expired", "expired on", "chain.pem"),
    ("not yet valid", "is not valid before", "chain.pem"),
    ("no EKU", "lacks a C2PA extended key usage", "chain.pem"),
    ("server EKU", "lacks a C2PA extended key usage", "chain.pem"),
    ("wrong key", "does not match the signing certificate", "other.pem"),
    ("self-signed", "self-signed or CA certificate", "chain.pem"),
    ("out of order", "is not issued by the next certificate", "chain.pem"),
    ("not PEM", "not a PEM certificate chain", "chain.pem"),
    ("missing key", "cannot read the private key", "nokey.pem"),
    ("garbage key", "not a usable private key", "key.pem"),
])
def test_bad_certificates_and_keys_are_one_line_naming_the_file(tmp_path, case, says, names):
    leaf = {"expired": {"days": (-30, -1)}, "not yet valid": {"days": (2, 30)}, "no EKU": {"eku": ()},
            "server EKU": {"eku": (ExtendedKeyUsageOID.SERVER_AUTH,)}}.get(case, {})
    cert, key, _ = make_chain(tmp_path, **leaf)
    if case == "wrong key":
        key = make_chain(tmp_path / "other")[1].rename(tmp_path / "other.pem")
    elif case == "self-signed":
        k = ec.generate_private_key(ec.SECP256R1())
        cert.write_bytes(_pem(_cert("me", k, "me", k, ca=False)))
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    elif case == "out of order":
        certs = x509.load_pem_x509_certificates(cert.read_bytes())
        cert.write_bytes(_pem(certs[0], certs[0]))
    elif case == "not PEM":
        cert.write_text("hello")
    elif case == "missing key":
        key = tmp_path / "nokey.pem"
    elif case == "garbage key":
        key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(C2PAError) as info:
        C2PASigner.from_files(cert, key)
    message = str(info.value)
    assert "\n" not in message and says in message and names in message, message


def test_signers_from_the_environment(chain):
    cert, key, _ = chain
    assert C2PASigner.from_env({}) is None
    signer = C2PASigner.from_env({"SSGAN_C2PA_CERT": str(cert), "SSGAN_C2PA_KEY": str(key)})
    assert signer.cert_path == cert
    with pytest.raises(C2PAError, match="SSGAN_C2PA_CERT is set but SSGAN_C2PA_KEY is not"):
        C2PASigner.from_env({"SSGAN_C2PA_CERT": str(cert)})


def test_unreadable_files(tmp_path, chain):
    cert, key, _ = chain
    signed = _image(tmp_path / "a.png")
    C2PASigner.from_files(cert, key).sign(signed, GENERATED)
    cut = tmp_path / "cut.png"
    cut.write_bytes(signed.read_bytes()[:300])
    with pytest.raises(C2PAError, match="cut.png: cannot read its C2PA data"):
        read_manifest(cut)
    with pytest.raises(C2PAError, match="none.png: no such file"):
        read_manifest(tmp_path / "none.png")
    with pytest.raises(C2PAError, match=r"a.bmp: C2PA manifests are written into"):
        C2PASigner.from_files(cert, key).sign(tmp_path / "a.bmp", GENERATED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "cut.png"]  # no temporary file left
