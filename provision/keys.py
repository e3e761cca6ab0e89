"""The farm's SSH key: ed25519, private part 0600, generated when missing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def public_key(private_key_path: Path) -> str | None:
    """`TYPE BLOB` of the key's .pub file, without its comment."""
    pub = private_key_path.with_name(private_key_path.name + ".pub")
    return " ".join(pub.read_text().split()[:2]) if pub.exists() else None


def ensure_keypair(path: Path, comment: str) -> tuple[str, bool]:
    """Return (public key line, created?). Tightens a too-open private key to 0600."""
    pub_path = path.with_name(path.name + ".pub")
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        if not pub_path.exists():
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
            _write_public(pub_path, key, comment)
        return public_key(path), False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    _write_public(pub_path, key, comment)
    return public_key(path), True


def _write_public(pub_path: Path, key, comment: str) -> None:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    pub_path.write_text(f"{line} {comment}\n")
