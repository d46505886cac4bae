"""What makes a bundle trustworthy on disk: its digest, its files read safely, the digest its C header embeds.

- :func:`bundle_digest` (over :func:`canonical_json`) is the one definition of the bundle digest;
- :class:`BundleFolder` opens listed files relative to the bundle folder, never through a symbolic
  link, and only regular files; :func:`check_name` keeps every listed name inside the folder;
- :func:`parse_manifest`, :func:`check_digest`, :func:`check_signature` and
  :func:`check_embedded_digest` are the steps ``export.bundle.load_bundle`` takes with them.

Device side: standard library and ``cryptography`` (lazily, via ``export.signing``) only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from edgecnn.errors import BundleError

MANIFEST_FILE = "manifest.json"
#: The manifest field holding the bundle digest, and the section of files that embed it: both are
#: left out of the digest (:func:`bundle_digest`); the signature covers them.
DIGEST_FIELD = "bundle_digest"
GENERATED_SECTION = "generated"
DIGEST_EXCLUDED = (DIGEST_FIELD, GENERATED_SECTION)
#: Beside the manifest, never listed in it (it signs the manifest): see export.signing.
SIGNATURE_FILE = "signature.json"
#: The C macro the generated header defines to the bundle digest (firmware reports it).
C_DIGEST_MACRO = "EDGECNN_BUNDLE_DIGEST"
#: Largest manifest read (a real one is about 15 KB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: Deepest sub-folder a listed file may sit in (``firmware/src/x.c`` is 2).
MAX_NAME_DEPTH = 4


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON document: sorted keys, no spaces, ASCII, no NaN/Infinity.

    Equal documents give equal bytes whatever their formatting in the file (the digest and the
    signature are of the content, not of the indentation).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def bundle_digest(manifest: dict) -> str:
    """The bundle digest of a manifest: sha256 (hex) of :func:`canonical_json` of the manifest
    without ``bundle_digest`` and ``generated``.

    The one definition: export calls it on the manifest once every listed file but the generated
    ones is written and hashed, then writes the files that embed it (the C header, firmware
    sources), lists those under ``generated`` and stores the digest under ``bundle_digest``.
    Every other key, including sections added later (e.g. a decision policy), is covered.
    """
    covered = {key: value for key, value in manifest.items() if key not in DIGEST_EXCLUDED}
    return hashlib.sha256(canonical_json(covered)).hexdigest()


def parse_manifest(data: bytes, manifest_path: Path, bundle_format: str) -> dict:
    """The manifest's JSON, refused when two JSON readers could read it differently."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise BundleError(f"{manifest_path}: key(s) {twice} appear twice in one object; a manifest "
                              f"must mean one thing to every JSON reader")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise BundleError(f"{manifest_path}: {name} is not a JSON number")

    try:
        manifest = json.loads(data, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BundleError(f"{manifest_path}: nested too deeply to be a manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != bundle_format:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{manifest_path}: format {found!r} is not {bundle_format!r}")
    return manifest


def check_digest(manifest: dict, manifest_path: Path) -> str:
    stored = manifest.get(DIGEST_FIELD)
    if not isinstance(stored, str) or not re.fullmatch(r"[0-9a-f]{64}", stored):
        raise BundleError(f"{manifest_path}: {DIGEST_FIELD} {str(stored)[:70]!r} is not a sha256 hex digest; "
                          f"the manifest was edited (re-export the bundle)")
    actual = bundle_digest(manifest)
    if actual != stored:
        raise BundleError(f"{manifest_path}: content does not match its {DIGEST_FIELD} ({stored[:16]}..., "
                          f"recomputed {actual[:16]}...); the manifest was modified after export")
    return actual


def check_signature(folder: BundleFolder, manifest: dict, required: Any):
    if isinstance(required, (str, Path)):
        from export import signing

        required = signing.load_public_key(required)  # a bad key is refused whatever the bundle
    if not folder.exists(SIGNATURE_FILE):
        if required is not None:
            raise BundleError(f"{folder.root}: unsigned bundle (no {SIGNATURE_FILE}); a signature is required "
                              f"(sign at export: edgecnn export --sign KEY)")
        return None
    from export import signing

    where = folder.root / SIGNATURE_FILE
    document = signing.read_signature_document(folder.read(SIGNATURE_FILE, limit=signing.MAX_SIGNATURE_BYTES),
                                               where)
    return signing.verify(manifest, document, where, required_key=required)


def check_embedded_digest(file: Path, content: bytes, digest: str) -> None:
    match = re.search(rb"#define\s+" + C_DIGEST_MACRO.encode() + rb'\s+"([0-9a-f]{64})"', content)
    if match is None:
        raise BundleError(f"{file}: defines no {C_DIGEST_MACRO}; the header was not written by this export")
    if match.group(1).decode() != digest:
        raise BundleError(f"{file}: embeds bundle digest {match.group(1).decode()[:16]}..., the bundle's is "
                          f"{digest[:16]}...; the header belongs to another bundle")


class BundleFolder:
    """The bundle folder, opened once: its members are opened relative to it, never through a
    symbolic link, and must be regular files (a FIFO or device would block or never end)."""

    _FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    _DIR_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_DIRECTORY", 0)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __enter__(self) -> BundleFolder:
        try:
            self.fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise BundleError(f"{self.root}: cannot open the bundle folder ({exc.strerror})") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _open(self, name: str, missing: str | None = None) -> int:
        parts = name.split("/")
        opened: list[int] = []
        parent = self.fd
        try:
            for part in parts[:-1]:
                parent = os.open(part, self._DIR_FLAGS, dir_fd=parent)
                opened.append(parent)
            fd = os.open(parts[-1], self._FILE_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise BundleError(missing or f"{self.root}: {name} is listed in {MANIFEST_FILE} but missing; "
                                         f"the bundle is incomplete") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise BundleError(f"{self.root / name}: a symbolic link (or under one); a bundle holds regular "
                                  f"files only, and none outside its folder") from None
            raise BundleError(f"{self.root / name}: cannot open it ({exc.strerror})") from None
        finally:
            for fd_ in opened:
                os.close(fd_)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BundleError(f"{self.root / name}: not a regular file; a bundle holds regular files only")
        return fd

    def read(self, name: str, *, limit: int, missing: str | None = None) -> bytes:
        fd = self._open(name, missing)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise BundleError(f"{self.root / name}: larger than {limit} bytes; not a bundle file")
        return data

    def verify(self, name: str, size: int, digest: str, verify_hash: bool, *, keep: bool = False) -> bytes | None:
        """Check a listed file's size and sha256; return its bytes when ``keep``."""
        fd = self._open(name)
        with os.fdopen(fd, "rb") as handle:
            actual = os.fstat(handle.fileno()).st_size
            file = self.root / name
            if actual != size:
                raise BundleError(f"{file}: {actual} bytes, the manifest says {size}; the file was modified")
            if not (verify_hash or keep):
                return None
            hasher = hashlib.sha256()
            chunks = []
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
                if keep:
                    chunks.append(chunk)
        if verify_hash and hasher.hexdigest() != digest:
            raise BundleError(f"{file}: sha256 does not match the manifest; the file was modified")
        return b"".join(chunks) if keep else None


def check_name(name: str, where: str) -> None:
    # A listed file is a relative path inside the bundle: no absolute paths, no '..', no backslashes
    # (a Windows separator), no control characters, and never the manifest or the signature.
    parts = name.split("/") if isinstance(name, str) else []
    if (not parts or any(p in ("", ".", "..") for p in parts) or len(parts) > MAX_NAME_DEPTH
            or "\\" in name or any(ord(c) < 32 for c in name) or name in (MANIFEST_FILE, SIGNATURE_FILE)):
        raise BundleError(f"{where}: {name!r} is not a file name inside the bundle (a relative path without "
                          f"'..', at most {MAX_NAME_DEPTH} levels deep)")
