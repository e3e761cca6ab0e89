"""The farm's SSH key pair (`ssh.private_key`): checked without being touched, made when missing.

`load_public_key` only reads: it never chmods, rewrites or removes a file, so a key archfarm did
not create keeps its mode and content (a too-open key is an error naming `chmod 600`, exactly as
ssh itself refuses one). `ensure_keypair` creates only what is missing: an ed25519 pair, or the
`.pub` of a good private key. Every new file is written to a temporary name in the same
directory opened with O_CREAT|O_EXCL|O_NOFOLLOW, then hard-linked to its final name, which fails
if anything is there (a dangling symlink included): a symlink planted at either name is never
followed, its target never written, and no half-written key is ever visible.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shlex
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from .errors import KeyFileError

MAX_KEY_BYTES = 64 * 1024  # an RSA-16384 private key is ~13 KB
SPECIAL_TREES = ("/proc", "/sys", "/dev")
OTHER_PATH = "point ssh.private_key at a new path, where archfarm generates a key"


def pub_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def load_public_key(path: Path) -> str | None:
    """The pair's public key line, `TYPE BLOB`, after checking the pair; changes nothing.

    None when neither the private key nor its .pub exists (ensure_keypair makes them). When
    only the .pub is missing, the line derived from the private key (ensure_keypair writes the
    .pub). Anything else wrong with the pair is a KeyFileError (exit 2) naming path and fix.
    """
    path = Path(path)
    pub = pub_path(path)
    _check_location(path)
    if not _exists(path):
        if _exists(pub):
            raise KeyFileError(str(pub), f"this public key exists but its private key {path}"
                               " does not, and a public key alone cannot log in",
                               f"put the private key at {path}, or remove {pub} so that"
                               " archfarm generates a new pair there, or " + OTHER_PATH)
        return None
    data, st = _read(path, "the private key")
    line = _public_line(path, _parse_private(path, data))
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(str(path), f"its permissions {mode:04o} let group or others read"
                           " the private key (ssh refuses such a key too)",
                           f"chmod 600 {shlex.quote(str(path))}")
    if not _exists(pub):
        return line
    pub_data, _ = _read(pub, "the public key")
    pub_line = _parse_public(pub, pub_data)
    if pub_line != line:
        raise KeyFileError(str(pub), f"does not match the private key {path}",
                           f"remove {pub} (archfarm writes it again from {path}), or point"
                           " ssh.private_key at the private key it belongs to")
    return line


class _Appeared(KeyFileError):
    """Something took the name between archfarm's check and its write."""


def ensure_keypair(path: Path, comment: str) -> tuple[str, bool]:
    """(public key line, created?). Checks the pair as load_public_key does; generates an
    ed25519 pair when neither file exists, writes a missing .pub for a good private key."""
    try:
        return _ensure_keypair(Path(path), comment)
    except _Appeared:
        # Most likely a concurrent run of this farm made the pair first: check everything
        # again from the start, and use what is there only if it passes.
        return _ensure_keypair(Path(path), comment)


def _ensure_keypair(path: Path, comment: str) -> tuple[str, bool]:
    pub = pub_path(path)
    line = load_public_key(path)
    comment = " ".join(comment.split())
    if line is not None:
        if not _exists(pub):
            _create(pub, f"{line} {comment}\n".encode(), 0o644)
        return line, False
    _make_parents(path.parent)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    line = _public_line(path, key)
    made = _create(path, private, 0o600)
    try:
        _create(pub, f"{line} {comment}\n".encode(), 0o644)
    except _Appeared:
        # A concurrent run found our private key already there and wrote its .pub first: the
        # pair is whole. Removing the private key here left that .pub without one, and every
        # later run refused it.
        try:
            theirs = _public_line_in(pub.read_bytes())
        except OSError:
            theirs = None
        if theirs != line:
            _remove_if_same(path, made)
            raise
    except BaseException:
        _remove_if_same(path, made)  # ours, just made: no private key without its .pub
        raise
    return line, True


# -- checks --------------------------------------------------------------------------------------

def _check_location(path: Path) -> None:
    if path.name.endswith(".pub"):
        raise KeyFileError(str(path), "this is a public key (.pub); ssh.private_key names the"
                           " private half of the pair",
                           f"set ssh.private_key to {path.with_suffix('')}")
    for where in {os.path.abspath(path), os.path.realpath(path)}:
        tree = next((t for t in SPECIAL_TREES if where == t or where.startswith(t + "/")), None)
        if tree:
            raise KeyFileError(str(path), f"is under {tree}, which holds no key files",
                               OTHER_PATH)


def _exists(path: Path) -> bool:
    """Whether anything (a dangling symlink included) is at `path`."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        file = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()),
                    path.parent)
        raise KeyFileError(str(path), f"{file} is a file, not a directory",
                           "point ssh.private_key at a path inside a directory") from None
    except OSError as e:
        raise KeyFileError(str(path), f"cannot look at it ({e.strerror})",
                           "check the permissions of its directories, or " + OTHER_PATH) \
            from None
    return True


def _read(path: Path, what: str) -> tuple[bytes, os.stat_result]:
    """A key file's bytes, refusing what is not a small regular file (without hanging)."""
    if os.path.islink(path) and not os.path.exists(path):
        raise KeyFileError(str(path), f"{what} is a symbolic link to a missing file"
                           f" ({os.readlink(path)})",
                           "remove the link, or point ssh.private_key at the real key")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise KeyFileError(str(path), f"cannot open {what} ({e.strerror})",
                           "check its owner and permissions, or " + OTHER_PATH) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise KeyFileError(str(path), f"is a directory, not {what}",
                               "point ssh.private_key at the key file in it, or at a new path"
                               " (archfarm generates a key there)")
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(str(path), f"is not a regular file, so not {what}", OTHER_PATH)
        if st.st_size > MAX_KEY_BYTES:
            raise KeyFileError(str(path), f"{st.st_size} bytes is too big for {what}",
                               OTHER_PATH)
        data = os.read(fd, MAX_KEY_BYTES + 1)
    except OSError as e:
        raise KeyFileError(str(path), f"cannot read {what} ({e.strerror})",
                           "check its owner and permissions, or " + OTHER_PATH) from None
    finally:
        os.close(fd)
    return data, st


def _parse_private(path: Path, data: bytes):
    encrypted = KeyFileError(
        str(path), "the private key is encrypted with a passphrase, and archfarm can only use"
        " an unencrypted key (it does not talk to ssh-agent)",
        f"{OTHER_PATH} (unencrypted ed25519), or remove the passphrase with"
        f" ssh-keygen -p -f {shlex.quote(str(path))}")
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            return loader(data, password=None)
        except TypeError:  # "password was not given but the key is encrypted"
            raise encrypted from None
        except UnsupportedAlgorithm:
            raise KeyFileError(str(path), "holds a kind of private key archfarm cannot use",
                               f"{OTHER_PATH} (ed25519)") from None
        except Exception:  # noqa: BLE001 (not this format: try the next, then say junk)
            continue
    if _public_line_in(data):
        raise KeyFileError(str(path), "holds a public key, not a private key",
                           "point ssh.private_key at the private half of the pair, or at a new"
                           " path, where archfarm generates a key")
    raise KeyFileError(str(path), "is not a private key archfarm can read (neither OpenSSH"
                       " nor PEM)", "point ssh.private_key at your private key file, or at a"
                       " new path, where archfarm generates a key")


def _public_line(path: Path, key) -> str:
    if isinstance(key, dsa.DSAPrivateKey) or not isinstance(
            key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyFileError(str(path), f"holds a {type(key).__name__.removesuffix('PrivateKey')}"
                           " key, which OpenSSH no longer accepts", f"{OTHER_PATH} (ed25519)")
    try:
        return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
    except ValueError:
        raise KeyFileError(str(path), "holds a key on a curve OpenSSH does not support",
                           f"{OTHER_PATH} (ed25519)") from None


def _public_line_in(data: bytes) -> str | None:
    """`TYPE BLOB` when `data` starts with an OpenSSH public key, else None."""
    line = b" ".join(data.split()[:2])
    try:
        serialization.load_ssh_public_key(line)
        return line.decode()
    except Exception:  # noqa: BLE001 (whatever it is, it is no public key)
        return None


def _parse_public(pub: Path, data: bytes) -> str:
    line = _public_line_in(data)
    if line:
        return line
    private = pub.with_name(pub.name.removesuffix(".pub"))
    raise KeyFileError(str(pub), "is not an OpenSSH public key",
                       f"remove it (archfarm writes it again from {private})")


# -- creating ------------------------------------------------------------------------------------

def _make_parents(directory: Path) -> None:
    """Create the missing directories, each 0700; leave existing ones as they are."""
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        except OSError as e:
            raise KeyFileError(str(d), f"cannot create this directory ({e.strerror})",
                               OTHER_PATH + ", somewhere you can write") from None


def _create(path: Path, data: bytes, mode: int) -> os.stat_result:
    """Write a new file at `path` that nothing else was at, never through a symlink."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, mode)
        except OSError as e:
            raise KeyFileError(str(path), f"cannot create it ({e.strerror})",
                               OTHER_PATH + ", somewhere you can write") from None
        try:
            _write_all(fd, data)
            made = os.fstat(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:
            raise _Appeared(str(path), "something (a symbolic link?) appeared here while"
                               " archfarm was creating the file, and was left alone",
                               f"look at what is at {path}, remove it if it is not yours,"
                               " and run again") from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise KeyFileError(str(path), f"cannot create it ({e.strerror})",
                                   OTHER_PATH + ", somewhere you can write") from None
            return _create_in_place(path, data, mode)  # no hard links on this filesystem
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return made


def _create_in_place(path: Path, data: bytes, mode: int) -> os.stat_result:
    """Where hard links are refused: O_EXCL|O_NOFOLLOW on the final name, still symlink-safe."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except FileExistsError:
        raise _Appeared(str(path), "something (a symbolic link?) appeared here while"
                           " archfarm was creating the file, and was left alone",
                           f"look at what is at {path}, remove it if it is not yours, and run"
                           " again") from None
    try:
        _write_all(fd, data)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _remove_if_same(path: Path, made: os.stat_result) -> None:
    with contextlib.suppress(OSError):
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
            os.unlink(path)
