"""The lab end to end: fake Compute Engine VMs are Debian machines reachable over SSH."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from google.cloud import compute_v1

from provision.cloud.tasks import destroy as destroy_task
from provision.cloud.tasks import vms as vms_task
from provision.lab import control
from provision.lab import tasks as lab_tasks

from .conftest import KW, PROJECT, Vm, lab_containers

REPO_INV = [sys.executable, "-m", "invoke"]


def running(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container],
                          capture_output=True, text=True).stdout.strip()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie awaiting its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def pids() -> dict[str, int | None]:
    return control.status()["services"]


def test_lab_up_twice_is_harmless(lab):
    before = pids()
    for _ in range(2):
        result = subprocess.run([*REPO_INV, "lab.up"], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
    after = pids()
    assert after == before  # nothing restarted, nothing duplicated
    assert "fake-gce: running" in result.stdout


def test_vms_boot_as_debian_machines_reachable_with_pinned_host_keys(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory)) == 0
    vms = {n: Vm(f"labtest-{n}", tmp_path / "farm-key", tmp_path) for n in ("arm64", "amd64")}
    for vm in vms.values():
        result = vm.ssh("sudo -n systemctl is-system-running")
        assert result.returncode == 0 or result.stdout.strip() == "degraded", result.stderr
        assert result.stdout.strip() in ("running", "degraded")
    # The keys are each VM's own: the other VM's keys do not pass strict checking.
    wrong = tmp_path / "wrong"
    wrong.write_text(vms["amd64"].known_hosts.read_text().replace(vms["amd64"].ip,
                                                                  vms["arm64"].ip))
    refused = vms["arm64"].ssh("true", known_hosts=wrong)
    assert refused.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_arm64_vms_are_marked_emulated_and_see_the_qemu_handler(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory)) == 0
    arm = Vm("labtest-arm64", tmp_path / "farm-key", tmp_path)
    amd = Vm("labtest-amd64", tmp_path / "farm-key", tmp_path)
    assert arm.wait_for("archfarm-lab/")["emulated"] == "TRUE"
    assert amd.wait_for("archfarm-lab/")["emulated"] == "FALSE"
    result = arm.ssh("cat /proc/sys/fs/binfmt_misc/qemu-aarch64")
    assert result.returncode == 0 and "enabled" in result.stdout


def test_apt_get_install_and_the_registry_work_inside_a_vm(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory), limit="amd64") == 0
    vm = Vm("labtest-amd64", tmp_path / "farm-key", tmp_path)
    installed = vm.ssh("sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive"
                       " apt-get install -y -qq --no-install-recommends jq >/dev/null"
                       " && jq --version")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("jq-")
    registry = vm.ssh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/")
    assert registry.stdout == "200"
    # A blob pushed from inside the VM through 127.0.0.1:5000 is in the host's registry.
    pushed = vm.ssh(PUSH_BLOB)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    url = f"http://{control.REGISTRY_ADDRESS}/v2/labtest/blob/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=30) as pulled:
        assert pulled.read() == b"lab-blob"


# Push a blob with the registry API (no docker in the VM), pull it back; print its digest.
PUSH_BLOB = r"""set -e
printf lab-blob > /tmp/blob
d=sha256:$(sha256sum /tmp/blob | cut -d' ' -f1)
r=http://127.0.0.1:5000/v2/labtest/blob/blobs
loc=$(curl -sf -X POST -D - -o /dev/null $r/uploads/ | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $loc in http*) ;; *) loc=http://127.0.0.1:5000$loc ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
h='Content-Type: application/octet-stream'
curl -sf -X PUT -H "$h" --data-binary @/tmp/blob "$loc${sep}digest=$d"
test "$(curl -sf $r/$d)" = lab-blob
echo $d
"""


def test_the_registry_socket_is_root_only(lab):
    """The socket forwarded into every VM: owner root, no group or other bits (no local user
    but root reaches the registry through it, on the host or in a VM)."""
    info = os.stat(control.registry_socket())
    assert stat.S_ISSOCK(info.st_mode)
    assert info.st_uid == 0
    assert stat.S_IMODE(info.st_mode) & 0o077 == 0, oct(info.st_mode)
    assert stat.S_IMODE(os.stat(control.state_dir()).st_mode) & 0o077 == 0


def test_inside_a_vm_only_root_uses_the_registry_socket(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory), limit="amd64") == 0
    vm = Vm("labtest-amd64", tmp_path / "farm-key", tmp_path)
    probe = ("curl -s -o /dev/null -w '%{http_code}' --unix-socket"
             " /run/archfarm-registry.sock http://registry/v2/")
    assert vm.ssh(probe).stdout == "000"  # builder: permission denied, no connection
    assert vm.ssh(f"sudo -n {probe}").stdout == "200"  # root (the VM's forwarder) gets in


def test_set_metadata_adds_an_account(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory), limit="amd64") == 0
    vm = Vm("labtest-amd64", tmp_path / "farm-key", tmp_path)
    current = vm.instance().metadata
    items = list(current.items)
    ssh_keys = next(i for i in items if i.key == "ssh-keys")
    pub = ssh_keys.value.split(":", 1)[1]
    ssh_keys.value += f"\nalice:{pub}"
    op = vm.client.set_metadata_unary(
        project=PROJECT, zone="us-central1-a", instance=vm.name,
        metadata_resource=compute_v1.Metadata(items=items, fingerprint=current.fingerprint))
    compute_v1.ZoneOperationsClient(**KW).wait(project=PROJECT, zone="us-central1-a",
                                               operation=op.name)
    for _ in range(50):
        result = vm.ssh("id -un && sudo -n true && echo sudo-ok", user="alice")
        if result.returncode == 0:
            break
    assert result.stdout.split() == ["alice", "sudo-ok"]


def test_stop_and_start_keep_the_vm_and_its_host_keys(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory), limit="amd64") == 0
    vm = Vm("labtest-amd64", tmp_path / "farm-key", tmp_path)
    container = vm.wait_for("archfarm-lab/")["container"]
    assert vm.ssh("sudo -n touch /var/was-here && echo ok").stdout.strip() == "ok"
    ops = compute_v1.ZoneOperationsClient(**KW)
    op = vm.client.stop_unary(project=PROJECT, zone="us-central1-a", instance=vm.name)
    ops.wait(project=PROJECT, zone="us-central1-a", operation=op.name)
    assert vm.instance().status == "TERMINATED"
    assert running(container) == "false"
    assert vms_task(inventory=str(lab_inventory), limit="amd64") == 0  # starts it again
    vm.wait_for("hostkeys/")
    assert running(container) == "true"
    result = vm.ssh("test -e /var/was-here && sudo -n systemctl is-system-running")
    assert result.stdout.strip() in ("running", "degraded"), result.stderr  # same host keys


def test_destroy_removes_the_containers_and_their_volumes(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory)) == 0
    Vm("labtest-arm64", tmp_path / "farm-key", tmp_path)
    assert len(lab_containers()) >= 2
    assert destroy_task(inventory=str(lab_inventory), yes=True) == 0
    assert lab_containers() == []
    assert control.lab_volumes() == []


def test_lab_down_leaves_no_process_container_or_volume(lab_inventory, tmp_path):
    assert vms_task(inventory=str(lab_inventory), limit="amd64") == 0
    Vm("labtest-amd64", tmp_path / "farm-key", tmp_path)
    before = pids()
    assert before["fake-gce"] and before["registry"]
    assert lab_tasks.down(json_mode=False) == 0
    assert not [pid for pid in before.values() if pid and alive(pid)]
    assert all(pid is None for pid in pids().values())
    assert not control.registry_socket().exists()
    # bring it back for whatever follows; the engine must hold no lab container or volume
    assert lab_tasks.up(json_mode=False) == 0
    assert lab_containers() == []
    assert control.lab_volumes() == []


def test_lab_up_as_a_normal_user_says_it_needs_root(monkeypatch, capsys):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert lab_tasks.up(json_mode=False) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "Fix: run `inv lab.up` as root" in err


def test_host_setup_run_by_a_normal_user_says_it_needs_root():
    script = control.HOST_SETUP
    with tempfile.TemporaryDirectory() as tmp:  # somewhere an unprivileged user can read
        copy = Path(tmp) / "host-setup.sh"
        shutil.copy(script, copy)
        Path(tmp).chmod(0o755)
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 str(copy), "http://mirror.invalid"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "run it as root" in result.stderr
