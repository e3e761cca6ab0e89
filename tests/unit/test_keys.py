"""The farm's SSH key pair: checked without being touched; made safely when missing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from provision import keys
from provision.errors import KeyFileError, UserError
from provision.keys import ensure_keypair, load_public_key


@pytest.fixture(autouse=True)
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def public_line(key) -> str:
    return key.public_key().public_bytes(ser.Encoding.OpenSSH,
                                         ser.PublicFormat.OpenSSH).decode()


def write_key(path: Path, key=None, *, fmt=ser.PrivateFormat.OpenSSH, password=None,
              mode=0o600, pub: str | None = "") -> str:
    """A key pair as ssh-keygen leaves it; pub='' writes the matching .pub, None none."""
    key = key or ed25519.Ed25519PrivateKey.generate()
    enc = ser.BestAvailableEncryption(password) if password else ser.NoEncryption()
    path.write_bytes(key.private_bytes(ser.Encoding.PEM, fmt, enc))
    path.chmod(mode)
    line = public_line(key)
    if pub is not None:
        Path(f"{path}.pub").write_text(pub or f"{line} me@host\n")
    return line


def snapshot(*paths: Path) -> list:
    out = []
    for p in paths:
        st = os.lstat(p)
        out.append((p, st.st_mode, st.st_ino, os.readlink(p) if os.path.islink(p)
                    else p.read_bytes()))
    return out


def refused(path: Path, *, call=load_public_key) -> str:
    with pytest.raises(KeyFileError) as e:
        call(path, "archfarm-t") if call is ensure_keypair else call(path)
    assert isinstance(e.value, UserError) and e.value.exit_code == 2
    message = str(e.value)
    assert "\n" not in message and " Fix: " in message
    return message


def modes(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- generating ---------------------------------------------------------------------------------

def test_a_new_pair_is_generated_safely(tmp_path):
    key = tmp_path / "new" / "deeper" / "farm-key"
    assert load_public_key(key) is None and not (tmp_path / "new").exists()
    line, created = ensure_keypair(key, "archfarm-t")
    assert created and line.startswith("ssh-ed25519 ") and len(line.split()) == 2
    assert modes(tmp_path / "new") == modes(tmp_path / "new" / "deeper") == 0o700
    assert modes(key) == 0o600 and modes(tmp_path / "new/deeper/farm-key.pub") == 0o644
    assert Path(f"{key}.pub").read_text() == f"{line} archfarm-t\n"
    assert sorted(p.name for p in key.parent.iterdir()) == ["farm-key", "farm-key.pub"]
    assert ensure_keypair(key, "archfarm-t") == (line, False)
    assert load_public_key(key) == line


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="no ssh-keygen")
def test_ssh_keygen_reads_the_generated_key(tmp_path):
    line, _ = ensure_keypair(tmp_path / "k", "c")
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(tmp_path / "k")],
                             capture_output=True, text=True, check=True).stdout
    assert derived.split()[:2] == line.split()


def test_an_existing_parent_directory_keeps_its_mode(tmp_path):
    (tmp_path / "ssh").mkdir(mode=0o755)
    ensure_keypair(tmp_path / "ssh" / "k", "c")
    assert modes(tmp_path / "ssh") == 0o755


# -- existing keys: accepted as they are --------------------------------------------------------

@pytest.mark.parametrize("key, fmt", [
    (ed25519.Ed25519PrivateKey.generate(), ser.PrivateFormat.OpenSSH),
    (ec.generate_private_key(ec.SECP256R1()), ser.PrivateFormat.OpenSSH),
    (rsa.generate_private_key(65537, 2048), ser.PrivateFormat.TraditionalOpenSSL),
    (rsa.generate_private_key(65537, 2048), ser.PrivateFormat.PKCS8),
])
def test_existing_unencrypted_keys_are_used_as_they_are(tmp_path, key, fmt):
    path = tmp_path / "id"
    line = write_key(path, key, fmt=fmt)
    before = snapshot(path, Path(f"{path}.pub"))
    assert load_public_key(path) == line
    assert ensure_keypair(path, "c") == (line, False)
    assert snapshot(path, Path(f"{path}.pub")) == before


def test_a_missing_pub_is_derived_then_written_by_ensure_keypair(tmp_path):
    path = tmp_path / "id"
    line = write_key(path, pub=None)
    assert load_public_key(path) == line and not Path(f"{path}.pub").exists()
    assert ensure_keypair(path, "archfarm-t") == (line, False)
    assert Path(f"{path}.pub").read_text() == f"{line} archfarm-t\n"
    assert modes(path) == 0o600


def test_a_symlinked_private_key_is_read_not_touched(tmp_path):
    real = tmp_path / "keys" / "id"
    real.parent.mkdir()
    line = write_key(real)
    (tmp_path / "link").symlink_to(real)
    Path(f"{tmp_path / 'link'}.pub").write_text(f"{line}\n")
    assert load_public_key(tmp_path / "link") == line


# -- refused, and never changed --------------------------------------------------------------

@pytest.mark.parametrize("call", [load_public_key, ensure_keypair])
def test_a_private_key_others_can_read_is_refused_and_its_mode_unchanged(tmp_path, call):
    path = tmp_path / "id"
    write_key(path, mode=0o644)
    before = snapshot(path, Path(f"{path}.pub"))
    message = refused(path, call=call)
    assert message == (f"{path}: its permissions 0644 let group or others read the private key"
                       f" (ssh refuses such a key too). Fix: chmod 600 {path}.")
    assert snapshot(path, Path(f"{path}.pub")) == before and modes(path) == 0o644


def test_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    assert "is a directory, not the private key" in refused(tmp_path / "d", call=ensure_keypair)


def test_a_path_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    message = refused(tmp_path / "f" / "id", call=ensure_keypair)
    assert f"{tmp_path / 'f'} is a file, not a directory" in message
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("path, tree", [("/proc/self/environ", "/proc"), ("/dev/null", "/dev"),
                                        ("/sys/kernel/nope", "/sys"), ("/dev/stdin", "/dev")])
def test_special_trees(path, tree):
    assert f"is under {tree}, which holds no key files" in refused(Path(path),
                                                                   call=ensure_keypair)


def test_a_symlink_into_proc(tmp_path):
    (tmp_path / "id").symlink_to("/proc/self/environ")
    assert "is under /proc" in refused(tmp_path / "id")


def test_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "id")
    assert "is not a regular file" in refused(tmp_path / "id", call=ensure_keypair)


def test_the_public_half_named_as_the_private_key(tmp_path):
    write_key(tmp_path / "id")
    message = refused(tmp_path / "id.pub", call=ensure_keypair)
    assert "this is a public key (.pub)" in message
    assert f"Fix: set ssh.private_key to {tmp_path / 'id'}." in message
    assert not (tmp_path / "id.pub.pub").exists()


def test_a_public_key_under_the_private_name(tmp_path):
    line = write_key(tmp_path / "other")
    (tmp_path / "id").write_text(f"{line} me@host\n")
    (tmp_path / "id").chmod(0o600)
    assert "holds a public key, not a private key" in refused(tmp_path / "id")


def test_junk(tmp_path):
    (tmp_path / "id").write_text("hello\n")
    (tmp_path / "id").chmod(0o600)
    message = refused(tmp_path / "id", call=ensure_keypair)
    assert "is not a private key archfarm can read" in message
    assert not (tmp_path / "id.pub").exists()


@pytest.mark.parametrize("fmt", [ser.PrivateFormat.OpenSSH, ser.PrivateFormat.PKCS8,
                                 ser.PrivateFormat.TraditionalOpenSSL])
def test_an_encrypted_key_is_refused_with_what_archfarm_needs(tmp_path, fmt):
    key = (ed25519.Ed25519PrivateKey.generate() if fmt != ser.PrivateFormat.TraditionalOpenSSL
           else ec.generate_private_key(ec.SECP256R1()))
    write_key(tmp_path / "id", key, fmt=fmt, password=b"secret-words")
    message = refused(tmp_path / "id", call=ensure_keypair)
    assert "encrypted with a passphrase" in message and "an unencrypted key" in message
    assert "ssh-agent" in message and f"ssh-keygen -p -f {tmp_path / 'id'}" in message


def test_a_dsa_key(tmp_path):
    key = dsa.generate_private_key(1024)
    (tmp_path / "id").write_bytes(key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()))
    (tmp_path / "id").chmod(0o600)
    assert "holds a DSA key, which OpenSSH no longer accepts" in refused(tmp_path / "id")


def test_a_pub_of_another_key(tmp_path):
    write_key(tmp_path / "id", pub=write_key(tmp_path / "other") + "\n")
    before = snapshot(tmp_path / "id", tmp_path / "id.pub")
    message = refused(tmp_path / "id", call=ensure_keypair)
    assert message.startswith(f"{tmp_path / 'id.pub'}: does not match the private key")
    assert snapshot(tmp_path / "id", tmp_path / "id.pub") == before


@pytest.mark.parametrize("junk", ["ssh-rsa NOTBASE64!!\n", "", "ssh-ed25519\n"])
def test_a_junk_pub(tmp_path, junk):
    write_key(tmp_path / "id", pub=junk or " ")
    assert f"{tmp_path / 'id.pub'}: is not an OpenSSH public key" in refused(tmp_path / "id")


def test_only_the_pub(tmp_path):
    write_key(tmp_path / "other", pub=None)
    (tmp_path / "id.pub").write_text(public_line(ed25519.Ed25519PrivateKey.generate()))
    message = refused(tmp_path / "id", call=ensure_keypair)
    assert "this public key exists but its private key" in message
    assert not (tmp_path / "id").exists()


# -- planted symlinks: never followed, their targets never written ------------------------------

@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    path.chmod(0o640)
    return path


def test_a_symlink_planted_at_the_pub(tmp_path, victim):
    (tmp_path / "ssh").mkdir()
    (tmp_path / "ssh" / "id.pub").symlink_to(victim)
    refused(tmp_path / "ssh" / "id", call=ensure_keypair)
    assert victim.read_text() == "precious\n" and modes(victim) == 0o640
    assert not (tmp_path / "ssh" / "id").exists()


def test_a_symlink_planted_at_the_pub_of_a_good_key(tmp_path, victim):
    write_key(tmp_path / "id", pub=None)
    (tmp_path / "id.pub").symlink_to(victim)
    assert "is not an OpenSSH public key" in refused(tmp_path / "id", call=ensure_keypair)
    assert victim.read_text() == "precious\n" and modes(victim) == 0o640


@pytest.mark.parametrize("name", ["id", "id.pub"])
def test_a_dangling_symlink_is_not_followed_to_create_its_target(tmp_path, name):
    if name == "id.pub":
        write_key(tmp_path / "id", pub=None)
    (tmp_path / name).symlink_to(tmp_path / "target")
    assert "is a symbolic link to a missing file" in refused(tmp_path / "id",
                                                               call=ensure_keypair)
    assert not (tmp_path / "target").exists()


def test_a_symlink_at_the_private_key_to_a_file_that_is_no_key(tmp_path, victim):
    (tmp_path / "id").symlink_to(victim)
    refused(tmp_path / "id", call=ensure_keypair)
    assert victim.read_text() == "precious\n" and modes(victim) == 0o640


@pytest.mark.parametrize("name", ["id", "id.pub"])
def test_a_symlink_planted_between_the_check_and_the_write(tmp_path, victim, monkeypatch,
                                                             name):
    """The race: nothing there when checked, a symlink there when written. The link(2) to
    the final name fails, the victim is untouched and no half pair is left behind."""
    def check_then_plant(path):
        if not (tmp_path / name).is_symlink():
            (tmp_path / name).symlink_to(victim)
        return None
    monkeypatch.setattr(keys, "load_public_key", check_then_plant)
    message = refused(tmp_path / "id", call=ensure_keypair)
    assert "appeared here while archfarm was creating the file" in message
    assert victim.read_text() == "precious\n" and modes(victim) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["victim", name])


def test_a_pair_made_meanwhile_by_a_concurrent_run_is_used(tmp_path, monkeypatch):
    """Two `inv vms` of one farm at once: the second finds the first's key at write time."""
    real_check = keys.load_public_key
    other: dict[str, str] = {}

    def check_then_other_run_writes(path):
        if not other:
            monkeypatch.setattr(keys, "load_public_key", real_check)
            other["line"], _ = ensure_keypair(path, "other run")
            return None  # what this run saw before the other run's write
        return real_check(path)
    monkeypatch.setattr(keys, "load_public_key", check_then_other_run_writes)
    line, created = ensure_keypair(tmp_path / "id", "this run")
    assert (line, created) == (other["line"], False)
    assert modes(tmp_path / "id") == 0o600


def test_a_pub_written_meanwhile_for_this_runs_key_keeps_the_pair(tmp_path, monkeypatch):
    """Two `inv vms` at once: this run makes the private key; the other run, finding it
    without its .pub, writes that .pub first. The pair is whole: this run must not remove
    its private key (it did, and left a .pub every later run refused: seen in CI)."""
    real_create = keys._create

    def other_run_writes_the_pub_first(path, data, mode):
        if path.name.endswith(".pub"):
            line = load_public_key(path.with_suffix(""))  # as the other run reads it
            real_create(path, f"{line} other run\n".encode(), 0o644)
        return real_create(path, data, mode)
    monkeypatch.setattr(keys, "_create", other_run_writes_the_pub_first)
    line, created = ensure_keypair(tmp_path / "id", "this run")
    assert created and load_public_key(tmp_path / "id") == line
    assert (tmp_path / "id.pub").read_text().startswith(line)


def test_a_pub_of_another_key_appearing_meanwhile_is_refused_and_ours_removed(
        tmp_path, monkeypatch):
    real_create = keys._create
    stranger = ensure_keypair(tmp_path / "other", "x")[0]

    def a_stranger_writes_the_pub_first(path, data, mode):
        if path.name == "id.pub":
            real_create(path, f"{stranger} stranger\n".encode(), 0o644)
        return real_create(path, data, mode)
    monkeypatch.setattr(keys, "_create", a_stranger_writes_the_pub_first)
    refused(tmp_path / "id", call=ensure_keypair)
    assert not (tmp_path / "id").exists()


def test_where_hard_links_are_refused_the_final_name_is_still_opened_exclusively(
        tmp_path, victim, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_link)
    line, created = ensure_keypair(tmp_path / "a", "c")
    assert created and load_public_key(tmp_path / "a") == line and modes(tmp_path / "a") == 0o600
    (tmp_path / "b.pub").symlink_to(victim)
    monkeypatch.setattr(keys, "load_public_key", lambda path: None)
    refused(tmp_path / "b", call=ensure_keypair)
    assert victim.read_text() == "precious\n" and not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
