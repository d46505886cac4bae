"""Ed25519 signatures of bundles: key files, signing at export, verification on load.

A signature covers the whole canonical manifest (``export.integrity.canonical_json``): the bundle
digest, every listed file's sha256 (models, golden vectors, the C array) and the ``generated``
section (files that embed the digest), so it vouches for every byte the device reads. It lives in
``signature.json`` beside the manifest (it cannot be inside what it signs):

    {"format": "edgecnn-signature", "version": 1, "algorithm": "ed25519",
     "key_id": "<16 hex>", "public_key": "<base64, 32 bytes>", "bundle_digest": "<64 hex>",
     "signature": "<base64, 64 bytes>"}

The signed message is ``SIGNATURE_CONTEXT + canonical_json(manifest)``: the context keeps a bundle
signature from being valid as anything else the same key might sign. Key files are PEM (PKCS#8
private key written 0600, SubjectPublicKeyInfo public key beside it as ``KEY.pub``), the formats
``openssl pkey`` reads. All cryptography is the ``cryptography`` package's; it is imported only when
a key is made, a bundle signed, or a signature checked (see docs/robustness.md for its cost).

Device side: numpy-free, TensorFlow-free.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from edgecnn.errors import BundleError, ConfigError
from export.integrity import DIGEST_FIELD, SIGNATURE_FILE, canonical_json

SIGNATURE_FORMAT = "edgecnn-signature"
SIGNATURE_VERSION = 1
ALGORITHM = "ed25519"
SIGNATURE_CONTEXT = b"edgecnn-bundle-manifest-v1\x00"
PUBLIC_SUFFIX = ".pub"
#: Largest signature.json read (it is about 400 bytes).
MAX_SIGNATURE_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class SignatureStatus:
    """A verified signature: who signed (key id) and whether that key was the one required."""

    key_id: str
    trusted: bool
    """True when verified against the public key the caller required (``--require-signature``);
    False when only against the key the signature file names (proves integrity since signing, not who)."""

    def describe(self) -> str:
        if self.trusted:
            return f"signed (ed25519 key {self.key_id}, verified against the required public key)"
        return (f"signed (ed25519 key {self.key_id}, signature valid; the key itself is not checked: "
                f"pass --require-signature PUBKEY)")

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": ALGORITHM, "key_id": self.key_id, "trusted_key": self.trusted}


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a base dependency; only a stripped environment lacks it
        raise BundleError("bundle signatures need the 'cryptography' package (pip install cryptography)") from None
    return ed25519, serialization, InvalidSignature


def key_id(public_raw: bytes) -> str:
    """A short name of a public key: the first 16 hex digits of the sha256 of its 32 raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _public_raw(public_key) -> bytes:
    _, serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- keys ------------------------------------------------------------------------------------------
def generate_key(out: str | Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 private key to ``out`` (mode 0600) and its public key to ``out.pub``.

    Refuses to replace either file. Returns (private path, public path, key id).
    """
    from edgecnn.fileio import atomic_open

    ed25519, serialization, _ = _crypto()
    out = Path(out)
    public = out.with_name(out.name + PUBLIC_SUFFIX)
    for path in (out, public):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} already exists; keygen never replaces a key (choose another --out)")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a folder")
    private_key = ed25519.Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    public_pem = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    with atomic_open(out, permissions=0o600, replace=False) as fh:
        fh.write(private_pem)
    try:
        with atomic_open(public, permissions=0o644, replace=False) as fh:
            fh.write(public_pem)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out, public, key_id(_public_raw(private_key.public_key()))


def _read_key_file(path: str | Path, what: str) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_SIGNATURE_BYTES:
        raise ConfigError(f"{what} {path}: {len(data)} bytes is not a key file")
    return data


def load_private_key(path: str | Path):
    """The Ed25519 private key of a PEM file; refused when others can read the file (as ssh does)."""
    ed25519, serialization, _ = _crypto()
    path = Path(path)
    data = _read_key_file(path, "signing key")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"signing key {path}: readable by others (mode {mode:04o}); chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing key {path}: not an unencrypted PEM private key "
                          f"({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"signing key {path}: a {type(key).__name__}, not an Ed25519 key "
                          "(make one with `edgecnn keygen`)")
    return key


def load_public_key(path: str | Path):
    """The Ed25519 public key of a PEM file (``KEY.pub`` from keygen)."""
    ed25519, serialization, _ = _crypto()
    data = _read_key_file(path, "public key")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"public key {path}: this is a private key; pass the public one ({path}{PUBLIC_SUFFIX})")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"public key {path}: not a PEM public key ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"public key {path}: a {type(key).__name__}, not an Ed25519 key")
    return key


# --- signing and verifying ----------------------------------------------------------------------------
def sign_manifest(manifest: dict, private_key) -> dict[str, Any]:
    """The ``signature.json`` document of a final manifest (its ``bundle_digest`` included)."""
    public_raw = _public_raw(private_key.public_key())
    signature = private_key.sign(SIGNATURE_CONTEXT + canonical_json(manifest))
    return {"format": SIGNATURE_FORMAT, "version": SIGNATURE_VERSION, "algorithm": ALGORITHM,
            "key_id": key_id(public_raw), "public_key": base64.b64encode(public_raw).decode(),
            DIGEST_FIELD: manifest[DIGEST_FIELD], "signature": base64.b64encode(signature).decode()}


def write_signature(folder: Path, manifest: dict, private_key) -> str:
    """Sign ``manifest`` and write ``signature.json`` into ``folder``; returns the key id."""
    from edgecnn.fileio import write_json

    document = sign_manifest(manifest, private_key)
    write_json(folder / SIGNATURE_FILE, document)
    return document["key_id"]


def verify(manifest: dict, document: Any, where: Path, required_key=None) -> SignatureStatus:
    """Check ``signature.json`` (parsed) against the manifest; BundleError unless it is valid.

    ``required_key``: an Ed25519 public key the bundle must be signed with (else any valid
    signature passes, reported as not trusted).
    """
    ed25519, _, invalid = _crypto()
    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise BundleError(f"{where}: not an edgecnn signature (format {SIGNATURE_FORMAT!r})")
    if document.get("version") != SIGNATURE_VERSION or document.get("algorithm") != ALGORITHM:
        raise BundleError(f"{where}: signature version {document.get('version')!r} / algorithm "
                          f"{document.get('algorithm')!r} unknown (this edgecnn reads version {SIGNATURE_VERSION}, "
                          f"{ALGORITHM})")
    try:
        public_raw = base64.b64decode(str(document["public_key"]), validate=True)
        signature = base64.b64decode(str(document["signature"]), validate=True)
        named = ed25519.Ed25519PublicKey.from_public_bytes(public_raw)
    except (KeyError, ValueError) as exc:
        raise BundleError(f"{where}: malformed signature ({' '.join(str(exc).split())[:100]})") from None
    signer = key_id(public_raw)
    if required_key is not None and _public_raw(required_key) != public_raw:
        raise BundleError(f"{where}: signed by key {signer}, not by the required key "
                          f"{key_id(_public_raw(required_key))}; refusing the bundle")
    if document.get(DIGEST_FIELD) != manifest.get(DIGEST_FIELD):
        raise BundleError(f"{where}: signs bundle digest {str(document.get(DIGEST_FIELD))[:64]}, the manifest's "
                          f"is {manifest.get(DIGEST_FIELD)}; the bundle was modified after signing")
    try:
        (required_key or named).verify(signature, SIGNATURE_CONTEXT + canonical_json(manifest))
    except invalid:
        raise BundleError(f"{where}: the signature does not match manifest.json; the bundle was modified "
                          f"after signing (or the signature was forged)") from None
    return SignatureStatus(key_id=signer, trusted=required_key is not None)


def read_signature_document(data: bytes, where: Path) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where}: not valid JSON ({exc})") from None
