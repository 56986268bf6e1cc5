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
from .formats.bundle import verify as verify_hashes
from .fsutil import clean_stale, locked

# Paths (relative to the bundle; a trailing "/" marks a folder) the signature does not cover.
IGNORED = (SIGNATURE, f"{REPORT_DIR}/")
_FIX_KEY = "pass an EC (P-256/P-384/P-521) key in PEM, e.g. from `openssl ecparam -genkey -name prime256v1`"
_FIX_PUB = (
    "pass the signer's EC public key in PEM (`openssl ec -in KEY -pubout`); a bundle signed "
    "with another key type must be re-signed with an EC key"
)
# model-signing's elliptic-key signer and verifier accept these curves only.
_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # P-256, P-384, P-521


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


def _unsupported(key: Any) -> str | None:
    """What a loaded key is when model-signing cannot use it ("an RSA key"), else None."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return None if key.curve.name in _CURVES else f"an EC key on curve {key.curve.name}"
    kinds = {
        "an RSA key": (rsa.RSAPublicKey, rsa.RSAPrivateKey),
        "a DSA key": (dsa.DSAPublicKey, dsa.DSAPrivateKey),
        "an Ed25519 key": (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey),
        "an Ed448 key": (ed448.Ed448PublicKey, ed448.Ed448PrivateKey),
    }
    return next((k for k, types in kinds.items() if isinstance(key, types)), "not an EC key")


def _key_problem(path: Path, private: bool, password: bytes | None = None) -> str | None:
    """Why ``path`` is not a usable key of that role, in words: model-signing's own errors
    name cryptography's internals ("'RSA' object has no attribute 'curve'")."""
    from cryptography.hazmat.primitives import serialization as ser

    data = path.read_bytes()
    if b"-----BEGIN " not in data:
        return "not a PEM file"
    key: Any
    try:
        if private:
            key = ser.load_pem_private_key(data, password=password)
        else:
            key = ser.load_pem_public_key(data)
    except Exception as e:  # ValueError, TypeError (password), UnsupportedAlgorithm
        if not private and b"PRIVATE KEY-----" in data:
            return "it is a private key; pass its public half"
        if private and b"PUBLIC KEY-----" in data:
            return "it is a public key; signing needs the private key"
        why = first_line(e)
        return "not a readable PEM key" if why.startswith("Unable to load PEM") else why
    kind = _unsupported(key)
    if kind is None:
        return None
    return f"{kind}; only EC keys on P-256, P-384 or P-521 are supported"


def _signer(ms: ModuleType, private_key: Path, password: bytes | None) -> Any:
    try:
        problem = _key_problem(private_key, True, password)
        if problem is None:
            # model-signing annotates the password as str, but cryptography needs bytes.
            return ms.signing.Config().use_elliptic_key_signer(
                private_key=private_key, password=cast(Any, password)
            )
    except OSError as e:
        raise BundleError(
            f"cannot read private key {private_key} ({e.strerror}); {_FIX_KEY}"
        ) from None
    except Exception as e:
        problem = first_line(e)
    raise BundleError(f"{private_key} is not a usable private key ({problem}); {_FIX_KEY}")


def check_private_key(private_key: str | Path, password: bytes | None = None) -> None:
    """Fail now, not after an export: the extra is installed and the key loads."""
    _signer(_lib(), Path(private_key), password)


def is_signed(bundle: str | Path) -> bool:
    return (Path(bundle) / SIGNATURE).is_file()


def sign(bundle: str | Path, private_key: str | Path, password: bytes | None = None) -> Path:
    """Write ``bundle/edgetune.sig`` over the bundle as its manifest records it.

    Holds the bundle's writer lock while it works (a bundle another process is writing is
    refused, with a ``LockedError``), and signs only a bundle whose files match the manifest's
    hashes. The signature is written atomically, so a failed run leaves any old one whole.
    """
    ms = _lib()
    bundle, private_key = Path(bundle), Path(private_key)
    if not (bundle / MANIFEST).is_file():  # before the lock, which would create missing folders
        raise BundleError(
            f"{bundle} is not an edgetune bundle (no {MANIFEST}); pass a bundle directory"
        )
    cfg = _signer(ms, private_key, password)  # the caller's key, judged before the bundle's bytes
    # Re-entrant: export signs what it has just written while still holding the lock.
    with locked(bundle, "bundle"):
        clean_stale(bundle, MANIFEST)  # a killed writer's temporary manifest is not signed
        verify_hashes(bundle)  # the signature vouches for the bundle: no changed or extra files
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
    # The key is the caller's input: judged before the bundle's state.
    try:
        problem = _key_problem(public_key, False)
        if problem is None:
            cfg = ms.verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except OSError as e:
        raise BundleError(
            f"cannot read public key {public_key} ({e.strerror}); pass the signer's public key in PEM"
        ) from None
    except Exception as e:
        problem = first_line(e)
    if problem is not None:
        raise BundleError(f"{public_key} is not a usable public key ({problem}); {_FIX_PUB}")
    if not is_signed(bundle):
        raise BundleError(
            f"bundle {bundle} is not signed; sign it with `edgetune export --sign KEY` or `edgetune sign` (it has no {SIGNATURE})"
        )
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
