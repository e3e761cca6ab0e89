"""Chaos: `inv vms` on a six-node farm under one fault scenario each, through the real CLI and the
real `google-cloud-compute` client against the fake.

Whatever the fault, every scenario must hold the same invariants:

- the run ends with exit 0 or 1 (never 2, 130 or a crash) and no traceback on stderr;
- `--json` prints one object naming every node, and each failed node carries an "error" in
  words (no raw request URL);
- no VM exists twice (one name, one zone), and every VM carries the farm's labels;
- a node reported done has its VM, RUNNING, in the zone it names (nothing claimed is lost);
- with the faults cleared, a re-run converges: exit 0, exactly the six VMs RUNNING, one
  firewall rule; then `destroy --yes` exits 0 and leaves nothing labelled and no rule.

Each scenario counts in the "fault scenarios" tally printed at the end of the run (conftest).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass, field

import pytest
from google.cloud import compute_v1

from provision.cloud.tasks import destroy as destroy_task
from provision.cloud.tasks import vms as vms_task

from .conftest import PROJECT, SIX, count_tracebacks, inv

ZONES = ["us-central1-a", "us-central1-b", "us-central1-f"]
NODES = ["arm-1", "arm-2", "arm-3", "x86-1", "x86-2", "x86-3"]
RULE = "archfarm-t-ssh"
FAST = 0.05  # seconds per fake operation

@dataclass(frozen=True)
class Scenario:
    faults: dict
    exit: int | None = None               # the first run's exit code, when it is certain
    failed: frozenset[str] | None = None  # exactly these keys fail, when certain
    whole_run: bool = False               # the run cannot start: one {"error"} and no change
    leaves_nothing: bool = False          # a failed node has no VM (a failed insert is undone)
    destroy_faults: dict = field(default_factory=dict)  # in force during destroy as well


def err(method: str, status: int, reason: str, count: int | None = None,
        after: bool = False) -> dict:
    rule = {"method": method, "status": status, "reason": reason}
    if count is not None:
        rule["count"] = count
    if after:
        rule["after"] = True
    return rule


ARM = frozenset(n for n in NODES if n.startswith("arm"))
X86 = frozenset(n for n in NODES if n.startswith("x86"))
EVERY = ARM | X86

SCENARIOS = {
    # capacity: zone failover
    "stockout t2a in zone a": Scenario(
        {"stockouts": [{"zone": "us-central1-a", "machine_family": "t2a"}]}, 0),
    "stockout n2 in zone a": Scenario(
        {"stockouts": [{"zone": "us-central1-a", "machine_family": "n2"}]}, 0),
    "stockout of every family in zones a and b": Scenario(
        {"stockouts": [{"zone": "us-central1-a"}, {"zone": "us-central1-b"}]}, 0),
    "stockout t2a in every zone": Scenario(
        {"stockouts": [{"zone": z, "machine_family": "t2a"} for z in ZONES]}, 1, ARM,
        leaves_nothing=True),
    "stockout of everything in every zone": Scenario(
        {"stockouts": [{"zone": z} for z in ZONES]}, 1, EVERY, leaves_nothing=True),
    "regional n2 quota": Scenario(
        {"quota_exceeded": [{"region": "us-central1", "machine_family": "n2"}]}, 1, X86,
        leaves_nothing=True),
    "regional quota for every family": Scenario(
        {"quota_exceeded": [{"region": "us-central1"}]}, 1, EVERY, leaves_nothing=True),
    "stockout t2a in zone a and rate limits on insert": Scenario(
        {"stockouts": [{"zone": "us-central1-a", "machine_family": "t2a"}],
         "http_errors": [err("instances.insert", 403, "rateLimitExceeded", 3)]}, 0),
    # transient errors: retried, no duplicate
    "503 on insert x3": Scenario(
        {"http_errors": [err("instances.insert", 503, "backendError", 3)]}, 0),
    "500 on insert x2": Scenario(
        {"http_errors": [err("instances.insert", 500, "internalError", 2)]}, 0),
    "502 and 504 on insert": Scenario(
        {"http_errors": [err("instances.insert", 502, "badGateway", 1),
                         err("instances.insert", 504, "gatewayTimeout", 1)]}, 0),
    "429 on insert x2": Scenario(
        {"http_errors": [err("instances.insert", 429, "rateLimitExceeded", 2)]}, 0),
    "403 rateLimitExceeded on insert x4": Scenario(
        {"http_errors": [err("instances.insert", 403, "rateLimitExceeded", 4)]}, 0),
    "503 on zoneOperations.wait x3": Scenario(
        {"http_errors": [err("zoneOperations.wait", 503, "backendError", 3)]}, 0),
    "500 on instances.get x3": Scenario(
        {"http_errors": [err("instances.get", 500, "backendError", 3)]}, 0),
    "503 and rate limit on aggregatedList": Scenario(
        {"http_errors": [err("instances.aggregatedList", 503, "backendError", 1),
                         err("instances.aggregatedList", 403, "rateLimitExceeded", 1)]}, 0),
    "503 on firewalls.get, insert and globalOperations.wait": Scenario(
        {"http_errors": [err("firewalls.get", 503, "backendError", 1),
                         err("firewalls.insert", 502, "badGateway", 1),
                         err("globalOperations.wait", 504, "gatewayTimeout", 1)]}, 0),
    # lost responses: the call took effect, its answer did not come back
    "lost responses on insert x3": Scenario(
        {"http_errors": [err("instances.insert", 503, "backendError", 3, after=True)]}, 0),
    "lost responses on insert and a stockout in zone a": Scenario(
        {"stockouts": [{"zone": "us-central1-a"}],
         "http_errors": [err("instances.insert", 503, "backendError", 4, after=True)]}, 0),
    "lost 409 on insert (made meanwhile)": Scenario(
        {"http_errors": [err("instances.insert", 409, "alreadyExists", 1, after=True)]}, 0),
    "lost responses on delete after a stockout": Scenario(
        {"stockouts": [{"zone": "us-central1-a", "machine_family": "t2a"}],
         "http_errors": [err("instances.delete", 503, "backendError", 3, after=True)]}, 0),
    "lost response on firewalls.insert": Scenario(
        {"http_errors": [err("firewalls.insert", 503, "backendError", 1, after=True)]}, 0),
    "lost responses on delete and firewalls.delete during destroy": Scenario(
        {}, 0, destroy_faults={"http_errors": [
            err("instances.delete", 503, "backendError", 6, after=True),
            err("firewalls.delete", 500, "backendError", 1, after=True)]}),
    "rate limits during destroy": Scenario(
        {}, 0, destroy_faults={"http_errors": [
            err("instances.aggregatedList", 403, "rateLimitExceeded", 1),
            err("instances.delete", 403, "rateLimitExceeded", 3),
            err("zoneOperations.wait", 503, "backendError", 2)]}),
    # permanent errors: the node fails with its cause, the rest goes on
    "permanent 503 on insert": Scenario(
        {"http_errors": [err("instances.insert", 503, "backendError")]}, 1, EVERY),
    "permanent 503 on zoneOperations.wait": Scenario(
        {"http_errors": [err("zoneOperations.wait", 503, "backendError")]}, 1, EVERY),
    "permanent lost responses on insert": Scenario(
        {"http_errors": [err("instances.insert", 503, "backendError", after=True)]}, 1, EVERY),
    "permanent lost responses on firewalls.insert": Scenario(
        {"http_errors": [err("firewalls.insert", 500, "backendError", after=True)]}, 1,
        frozenset({RULE})),
    # A stocked-out insert leaves no VM, so there is nothing to delete: failover goes on.
    "permanent 503 on the delete after a stockout": Scenario(
        {"stockouts": [{"zone": "us-central1-a", "machine_family": "t2a"}],
         "http_errors": [err("instances.delete", 503, "backendError")]}, 0),
    "permanent 500 on firewalls.insert": Scenario(
        {"http_errors": [err("firewalls.insert", 500, "backendError")]}, 1,
        frozenset({RULE})),
    "permanent 503 on aggregatedList": Scenario(
        {"http_errors": [err("instances.aggregatedList", 503, "backendError")]}, 1,
        whole_run=True),
    "permanent 503 on firewalls.get": Scenario(
        {"http_errors": [err("firewalls.get", 503, "serviceUnavailable")]}, 1, whole_run=True),
    "permanent 503 on instances.get": Scenario(
        {"http_errors": [err("instances.get", 503, "serviceUnavailable")]}, 1, EVERY),
    "permanent rate limit on firewalls.get": Scenario(
        {"http_errors": [err("firewalls.get", 403, "rateLimitExceeded")]}, 1, whole_run=True),
    # other
    "slow operations": Scenario({"operation_seconds": 1.0}, 0),
    "slow boot": Scenario({"boot_seconds": 0.5}, 0),
    "non-retryable 400 on one insert": Scenario(
        {"http_errors": [err("instances.insert", 400, "invalid", 1)]}, 1),
    "404 on one operation wait": Scenario(
        {"http_errors": [err("zoneOperations.wait", 404, "notFound", 1)]}),
    "403 forbidden (not a rate limit) on one get": Scenario(
        {"http_errors": [err("instances.get", 403, "forbidden", 1)]}, 1),
}


@pytest.fixture
def short_retries(monkeypatch):
    monkeypatch.setattr("provision.gce.operations.RETRY_SECONDS", 2.0)


def run_cli(fn, *, capsys, **flags) -> tuple[int, dict, str]:
    """Run a task with --json: (exit code, the last stdout line as JSON, stderr)."""
    capsys.readouterr()
    code = fn(**flags, json_mode=True)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines, f"no JSON on stdout; stderr: {captured.err}"
    return code, json.loads(lines[-1]), captured.err


def all_vms(fake) -> list:
    client = fake.client(compute_v1.InstancesClient)
    return [vm for _, scope in client.aggregated_list(project=PROJECT) for vm in scope.instances]


def rules(fake) -> list[str]:
    return [r.name for r in fake.client(compute_v1.FirewallsClient).list(project=PROJECT)]


def zone_of(vm) -> str:
    return vm.zone.rsplit("/", 1)[-1]


def check_vms(fake) -> dict:
    """No twin, every VM labelled as the farm's: {vm name: vm}."""
    vms = all_vms(fake)
    twins = [n for n, c in Counter(vm.name for vm in vms).items() if c > 1]
    assert not twins, f"VMs made twice: {[(vm.name, zone_of(vm)) for vm in vms]}"
    for vm in vms:
        labels = dict(vm.labels)
        assert labels.get("managed-by") == "archfarm", (vm.name, labels)
        assert labels.get("archfarm-farm") == "t", (vm.name, labels)
        assert vm.name == f"t-{labels.get('archfarm-node')}", (vm.name, labels)
    return {vm.name: vm for vm in vms}


def check_result(scenario: Scenario, code: int, result: dict, fake) -> None:
    assert code in (0, 1), (code, result)
    if scenario.exit is not None:
        assert code == scenario.exit, result
    if scenario.whole_run:
        assert set(result) == {"error"} and "http://" not in result["error"], result
        assert fake.mutating_requests() == []
        return
    assert set(result) == {"nodes"}, result
    nodes = result["nodes"]
    assert set(nodes) == {*NODES, RULE}, sorted(nodes)
    failed = {k for k, r in nodes.items() if r["failed"]}
    assert code == (1 if failed else 0), nodes
    if scenario.failed is not None:
        assert failed == scenario.failed, nodes
    for key in failed:
        error = nodes[key].get("error")
        assert error and isinstance(error, str), nodes[key]
        assert "http://" not in error and "https://" not in error, error
        assert "Traceback" not in error, error
    vms = check_vms(fake)
    for key in set(NODES) - failed:  # done means done: the VM is there, RUNNING, where said
        vm = vms.get(f"t-{key}")
        assert vm is not None and vm.status == "RUNNING", (key, nodes[key])
        if "zone" in nodes[key]:
            assert zone_of(vm) == nodes[key]["zone"], (key, nodes[key], vm.zone)
    if scenario.leaves_nothing:
        assert not [n for n in failed if f"t-{n}" in vms], sorted(vms)
    if RULE not in failed:
        assert rules(fake) == [RULE]


@pytest.mark.tally("fault")
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault_scenario_keeps_the_invariants_and_a_rerun_converges(
        fake_gce, write_inventory, capsys, short_retries, record_property, name):
    scenario = SCENARIOS[name]
    inventory = str(write_inventory(SIX))
    tracebacks = 0
    try:
        fake_gce.set_faults(**{"operation_seconds": FAST, **scenario.faults})
        code, result, err = run_cli(vms_task, inventory=inventory, capsys=capsys)
        tracebacks += count_tracebacks(err)
        assert "Traceback" not in err, err
        check_result(scenario, code, result, fake_gce)

        fake_gce.set_faults(operation_seconds=FAST)
        code, result, err = run_cli(vms_task, inventory=inventory, capsys=capsys)
        tracebacks += count_tracebacks(err)
        assert "Traceback" not in err, err
        assert code == 0, result
        vms = check_vms(fake_gce)
        assert sorted(vms) == [f"t-{n}" for n in NODES]
        assert {vm.status for vm in vms.values()} == {"RUNNING"}
        assert rules(fake_gce) == [RULE]

        fake_gce.set_faults(**{"operation_seconds": FAST, **scenario.destroy_faults})
        code, result, err = run_cli(destroy_task, inventory=inventory, yes=True, capsys=capsys)
        tracebacks += count_tracebacks(err)
        assert "Traceback" not in err, err
        assert code == 0, result
        fake_gce.set_faults(operation_seconds=FAST)
        assert all_vms(fake_gce) == [] and rules(fake_gce) == []
    finally:
        record_property("tracebacks", tracebacks)


# -- the retry deadline holds for every call --------------------------------------------------

@pytest.mark.tally("fault")
@pytest.mark.parametrize("method", ["instances.aggregatedList", "instances.get"])
def test_a_permanent_503_on_a_read_gives_up_at_the_retry_deadline(
        fake_gce, write_inventory, tmp_path, record_property, method):
    """Through the real command line, with ARCHFARM_API_RETRY_SECONDS=2: the run must end
    (exit 1, each failure in words) within a few seconds, not after the client's own 600 s of
    retrying reads (nested inside archfarm's retry until c909212)."""
    inventory = write_inventory(SIX)
    fake_gce.set_faults(operation_seconds=FAST,
                        http_errors=[err(method, 503, "serviceUnavailable")])
    record_property("tracebacks", 0)
    try:
        result = inv("vms", "-i", str(inventory), "--json", home=tmp_path, timeout=12,
                     env={"ARCHFARM_API_RETRY_SECONDS": "2"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"`inv vms` still retrying {method} after 12 s with a 2 s retry deadline")
    record_property("tracebacks", count_tracebacks(result.stderr))
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    text = json.dumps(out)
    assert "gave up after retrying for 2 s" in text and "http://" not in text
