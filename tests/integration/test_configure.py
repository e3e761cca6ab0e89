"""`inv configure` and `inv provision` against the fake, where no VM has an SSH server: what
a user sees when hosts are missing or not reachable, and that check mode changes nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from provision.configure import configure as configure_task
from provision.keys import ensure_keypair
from provision.pipeline import provision as provision_task

from .conftest import LAB_LIKE, REPO, count_tracebacks, inv, mutations, run_json, run_vms


def test_configure_before_any_vm_or_key_says_to_run_vms_first(inventory, fake_gce, capsys):
    code, out = run_json(configure_task, inventory=str(inventory), capsys=capsys)
    assert code == 2
    assert "no farm key here yet" in out["error"] and "run `inv vms`" in out["error"]
    assert mutations(fake_gce) == []


def test_configure_without_vms_reports_each_node_unreachable_and_changes_nothing(
        inventory, fake_gce, capsys, tmp_path):
    ensure_keypair(tmp_path / "ssh" / "farm-key", "test")
    code, out = run_json(configure_task, inventory=str(inventory), capsys=capsys)
    assert code == 1
    for node in ("arm", "x86"):
        assert out["nodes"][node]["unreachable"] is True
        assert "create it with `inv vms`" in out["nodes"][node]["note"]
    assert mutations(fake_gce) == []


def test_a_vm_that_publishes_no_host_keys_is_never_connected_to(inventory, fake_gce, tmp_path):
    fake_gce.set_faults(boot_seconds=600)  # the guest agent never gets to publish host keys
    assert run_vms(inventory) == 0
    done = inv("configure", "-i", str(inventory), "--json",
               env={"ARCHFARM_SSH_WAIT_SECONDS": "2", "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert done.returncode == 1, done.stderr
    assert "published no SSH host keys" in done.stdout
    assert count_tracebacks(done.stderr) == 0


def test_provision_check_on_an_empty_farm_plans_everything_and_changes_nothing(
        inventory, fake_gce, capsys):
    code, out = run_json(provision_task, inventory=str(inventory), check=True, capsys=capsys)
    assert code == 0
    for node in ("arm", "x86"):
        # one VM to create, then the five configure and three register steps once it is up
        assert out["nodes"][node]["changed"] == 9, out["nodes"][node]
        assert "once the VM is up" in out["nodes"][node]["note"]
    assert mutations(fake_gce) == []


def test_provision_check_counts_the_idle_stop_only_on_nodes_that_have_one(
        write_inventory, fake_gce, capsys):
    inventory = write_inventory(LAB_LIKE.replace(
        "    machine_type: t2a-standard-2\n",
        "    machine_type: t2a-standard-2\n    idle_stop_minutes: 20\n"))
    code, out = run_json(provision_task, inventory=str(inventory), check=True, capsys=capsys)
    assert code == 0
    assert "idle stop" in out["nodes"]["arm"]["changes"]
    assert out["nodes"]["arm"]["changed"] == 10
    assert "idle stop" not in out["nodes"]["x86"]["changes"]
    assert mutations(fake_gce) == []


def test_provision_creates_the_vms_and_reports_configure_per_node_in_one_recap(
        inventory, fake_gce, capsys, monkeypatch):
    from provision import configure

    monkeypatch.setattr(configure, "SSH_WAIT_SECONDS", 1.0)
    code, out = run_json(provision_task, inventory=str(inventory), capsys=capsys)
    assert code == 1  # the bare fake's VMs have no SSH: configure cannot reach them
    for node in ("arm", "x86"):
        result = out["nodes"][node]
        assert result["changed"] == 1 and result["unreachable"] is True, result
        assert "created in" in result["note"] and "no SSH to" in result["note"], result
    assert "archfarm-t-ssh" in out["nodes"]


def test_configure_limit_naming_no_node_is_bad_input(inventory, fake_gce, capsys):
    code, out = run_json(configure_task, inventory=str(inventory), limit="nope", capsys=capsys)
    assert code == 2 and "no node named nope" in out["error"]


def test_ctrl_c_while_waiting_for_host_keys_exits_130_with_the_recap(inventory, fake_gce,
                                                                    tmp_path):
    assert run_vms(inventory) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "configure", "-i", str(inventory)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ARCHFARM_SSH_WAIT_SECONDS": "60"})
    time.sleep(3)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    assert "interrupted" in out and count_tracebacks(err) == 0
