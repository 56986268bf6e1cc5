"""Optional bundle signing with OpenSSF model-signing (``pip install 'edgetune[sign]'``).

The manifest's SHA-256 list catches corruption, not tampering: anyone can rewrite it. A signature
made with a private key the consumer does not have closes that gap. Signing is key-based and
offline (no Sigstore, no OIDC, no network). An EC key pair (P-256; P-384 and P-521 also work)
comes from ``generate_key`` or from OpenSSL::

    openssl ecparam -genkey -name prime256v1 -noout -out edgetune.key
    openssl ec -in edgetune.key -pubout -out edgetune.pub

The signature ``edgetune.sig`` lives inside the bundle and covers every file but itself and
``validation/`` (reports that later validation runs rewrite), including ``edgetune.json``. Anything
that rewrites ``edgetune.json`` afterwards (metrics) invalidates it: sign last.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from .errors import BundleError, first_line
from .formats.bundle import MANIFEST, REPORT_DIR, SIGNATURE

# Paths (relative to the bundle; a trailing "/" marks a folder) the signature does not cover.
IGNORED = (SIGNATURE, f"{REPORT_DIR}/")
_FIX_KEY = "pass an EC (P-256/P-384/P-521) key in PEM, e.g. from `openssl ecparam -genkey -name prime256v1`"


def _lib() -> ModuleType:
    """model-signing pulls in sigstore and cryptography: the runtime install must not need them."""
    try:
        import model_signing.hashing
        import model_signing.signing
        import model_signing.verifying
    except ImportError:
        raise BundleError(
            "bundle signing needs the sign extra: pip install 'edgetune[sign]'"
        ) from None
    return model_signing


def _hashing(ms: ModuleType) -> Any:
    """Same settings for signing and verifying; git files are covered too (not ignored by default)."""
    return ms.hashing.Config().set_ignored_paths(
        paths=[p.rstrip("/") for p in IGNORED], ignore_git_paths=False
    )


def _why(e: Exception) -> str:
    """One short reason; model-signing's mismatch message repeats every digest as raw bytes."""
    if isinstance(e, (KeyError, json.JSONDecodeError)):
        return f"{SIGNATURE} is corrupt"
    if type(e).__name__ == "InvalidSignature":
        return f"{SIGNATURE} was not made with this key or was edited"
    s = first_line(e)
    if not s.startswith("Signature mismatch"):
        return s
    # The diff list is repr()'d: names are quoted with ' or \' depending on the digests' bytes.
    diff = [
        f"{k.lower()} files: {v}"
        for k, v in re.findall(r"(Extra|Missing) files (?:found )?in model .*?: ([^\"']*)", s)
    ]
    changed = re.findall(r"Hash mismatch for \\?'(.*?)\\?': Expected", s)
    diff += [f"changed files: {', '.join(changed)}"] if changed else []
    return "; ".join(diff) or "files differ from the signed list"


def _signer(ms: ModuleType, private_key: Path, password: bytes | None) -> Any:
    try:
        # model-signing annotates the password as str, but cryptography needs bytes.
        return ms.signing.Config().use_elliptic_key_signer(
            private_key=private_key, password=cast(Any, password)
        )
    except OSError as e:
        raise BundleError(
            f"cannot read private key {private_key} ({e.strerror}); {_FIX_KEY}"
        ) from None
    except Exception as e:  # ValueError, TypeError (password), AttributeError (not an EC key)...
        why = "not an elliptic-curve key" if isinstance(e, AttributeError) else first_line(e)
        raise BundleError(
            f"{private_key} is not a usable private key ({why}); {_FIX_KEY}"
        ) from None


def check_private_key(private_key: str | Path, password: bytes | None = None) -> None:
    """Fail now, not after an export: the extra is installed and the key loads."""
    _signer(_lib(), Path(private_key), password)


def is_signed(bundle: str | Path) -> bool:
    return (Path(bundle) / SIGNATURE).is_file()


def sign(bundle: str | Path, private_key: str | Path, password: bytes | None = None) -> Path:
    """Write ``bundle/edgetune.sig`` (atomically, so a failed run leaves any old signature whole)."""
    ms = _lib()
    bundle, private_key = Path(bundle), Path(private_key)
    if not (bundle / MANIFEST).is_file():  # the exporter checks the manifest; signing, the bytes
        raise BundleError(
            f"{bundle} is not an edgetune bundle (no {MANIFEST}); pass a bundle directory"
        )
    cfg = _signer(ms, private_key, password)
    dst = bundle / SIGNATURE
    # Written after hashing, so never covered; its mode follows the umask (it is public).
    tmp = bundle / f".{SIGNATURE}.{secrets.token_hex(6)}.tmp"
    try:
        # A symlinked bundle directory is fine; symlinks inside it are refused (model-signing's default).
        cfg.set_hashing_config(_hashing(ms)).sign(bundle.resolve(), tmp)
        os.replace(tmp, dst)
    except (OSError, ValueError) as e:
        raise BundleError(
            f"cannot sign bundle {bundle} ({first_line(e)}); bundles must hold only regular files (no symlinks) and be writable"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def verify(bundle: str | Path, public_key: str | Path) -> None:
    """Raise unless the bundle's files are exactly those signed by the holder of ``public_key``."""
    ms = _lib()
    bundle, public_key = Path(bundle), Path(public_key)
    if not bundle.is_dir():
        raise BundleError(
            f"bundle {bundle} does not exist or is not a directory; pass a bundle directory"
        )
    if not is_signed(bundle):
        raise BundleError(
            f"bundle {bundle} is not signed; sign it with `edgetune export --sign KEY` or `edgetune sign` (it has no {SIGNATURE})"
        )
    try:
        cfg = ms.verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except OSError as e:
        raise BundleError(
            f"cannot read public key {public_key} ({e.strerror}); pass the signer's public key in PEM"
        ) from None
    except Exception as e:
        raise BundleError(
            f"{public_key} is not a usable public key ({first_line(e)}); pass the signer's EC public key in PEM (`openssl ec -in KEY -pubout`)"
        ) from None
    # Any failure (changed files, wrong key, corrupt signature, a symlink) means "not verified".
    try:
        cfg.set_hashing_config(_hashing(ms)).verify(bundle.resolve(), bundle / SIGNATURE)
    except Exception as e:
        raise BundleError(
            f"bundle {bundle} fails signature verification ({_why(e)}); if its files changed, re-export and re-sign it, else pass the signer's public key"
        ) from None


def generate_key(private_out: str | Path, public_out: str | Path) -> None:
    """An unencrypted EC P-256 pair for tests and quick starts; the private key is created 0600."""
    _lib()  # cryptography comes with the sign extra
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(private_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        Path(public_out).write_bytes(pub)
    except FileExistsError:
        raise BundleError(
            f"private key {private_out} already exists; choose another path or delete it"
        ) from None
    except OSError as e:
        raise BundleError(
            f"cannot write key {e.filename or private_out} ({e.strerror}); choose a writable path"
        ) from None
