#!/usr/bin/python3
"""The lab's stand-in for the GCE guest agent, run by the fake's docker backend.

stdin: the instance metadata as JSON ({"ssh-keys": "...", ...}). It creates each `ssh-keys`
user with passwordless sudo (as GCE does, through the google-sudoers group) and their
authorized_keys, waits until sshd listens, then prints the host keys as JSON
({"ssh-ed25519": "AAAA...", ...}) for the backend to publish as guest attributes.
"""

import glob
import json
import os
import pwd
import subprocess
import sys
import time

SUDOERS = "/etc/sudoers.d/google_sudoers"


def accounts(ssh_keys: str) -> None:
    keys: dict[str, list[str]] = {}
    for line in ssh_keys.splitlines():
        user, sep, key = line.strip().partition(":")
        if sep and user and key.strip():
            keys.setdefault(user, []).append(key.strip())
    subprocess.run(["groupadd", "-f", "google-sudoers"], check=True)
    with open(SUDOERS, "w") as f:
        f.write("%google-sudoers ALL=(ALL:ALL) NOPASSWD:ALL\n")
    os.chmod(SUDOERS, 0o440)
    for user, lines in keys.items():
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-G", "google-sudoers", user],
                           check=True)
        entry = pwd.getpwnam(user)
        ssh_dir = os.path.join(entry.pw_dir, ".ssh")
        os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
        path = os.path.join(ssh_dir, "authorized_keys")
        with open(path + ".tmp", "w") as f:
            f.write("".join(f"{k}\n" for k in lines))
        os.replace(path + ".tmp", path)
        for p in (ssh_dir, path):
            os.chown(p, entry.pw_uid, entry.pw_gid)
        os.chmod(path, 0o600)


def sshd_listening() -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        if any(r.split()[1].endswith(":0016") and r.split()[3] == "0A" for r in rows):
            return True
    return False


def host_keys(deadline: float) -> dict:
    while time.monotonic() < deadline:
        pubs = glob.glob("/etc/ssh/ssh_host_*_key.pub")
        if pubs and sshd_listening():
            out = {}
            for pub in pubs:
                with open(pub) as f:
                    kind, blob = f.read().split()[:2]
                out[kind] = blob
            return out
        time.sleep(0.05)
    raise SystemExit("sshd did not come up")


def main() -> None:
    metadata = json.load(sys.stdin)
    deadline = time.monotonic() + 120
    while not os.path.exists("/run/systemd/system") and time.monotonic() < deadline:
        time.sleep(0.05)  # systemd is still starting
    accounts(metadata.get("ssh-keys", ""))
    if "--accounts-only" not in sys.argv:
        json.dump(host_keys(deadline), sys.stdout)


if __name__ == "__main__":
    main()
