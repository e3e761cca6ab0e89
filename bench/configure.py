"""Lab: a no-op `inv configure` beside Ansible, pyinfra and the SSH floor, on 2 and 8 VMs.

    inv lab.up && python bench/configure.py [--repeat 5] [--keep] [--no-cold] [--quick]

Farms in the running lab, each in its own project `archfarm-<farm>` (a fresh project's regional
quota holds 8 in-use addresses, so bench2 and bench8 cannot share one): `bench2` (1 arm64 +
1 amd64 node) and `bench8` (4 + 4), provisioned with `inv provision` until converged. Then,
interleaved, each `--repeat` times (median and min):

- archfarm: `inv configure -i INV`, the whole command as a user runs it;
- pyinfra: `pyinfra INV deploy.py -y`, a generated deploy checking what archfarm's facts check
  (docker.io, docker-cli (Debian 13), qemu-user-static and binfmt-support installed, docker
  active and enabled, daemon.json content (the containerd image store on), the farm user in
  the docker group, binfmt qemu-aarch64 with F);
- ansible: `ansible-playbook` with the same checks as a playbook (apt, copy, service, user and
  a shell check), pipelining, ControlPersist, 20 forks, no fact gathering; each run starts
  with no control master (as the first run of a session); a second row keeps the masters of
  the previous run (a re-run within ControlPersist);
- floor: one fresh OpenSSH connection and `true` per host, all hosts at once.

Every peer run must exit 0 and report no change on every host, or the bench stops; a round
in which the lab's shared binfmt handler was reset from outside is run again (see Drift). All SSH
clients pin the host keys from archfarm's known_hosts file for the farm. Ansible and pyinfra
come from PyPI into their own virtualenv (`~/.cache/archfarm-bench/peers-venv`, made if
missing), never into the project's.

Cold: two fresh farms of 2 VMs, each booted with `inv vms` and looked at once with
`inv configure --check` (host keys cached, first boot settled, nothing installed); then the
first real `inv configure` on `benchcold`, and the playbook's first run on `benchcoldansible`.

Targets (8 VMs, no-op): archfarm at most 1/2 of pyinfra, at most 1/8 of Ansible, at most 2x
the floor. Every bench farm is destroyed at the end (`inv destroy --yes`) unless --keep.

--quick: `bench2` only, one round, no warm-up, no cold runs, and no peers (nothing from
PyPI): archfarm and the floor are measured, the pyinfra and Ansible rows say skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _common import SKIPPED_QUICK, add_quick, figures, sizes

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
INV = [PY, "-m", "invoke"]
ENDPOINT = "http://127.0.0.1:8089"
STATE = Path.home() / ".cache" / "archfarm-bench"
PEERS = STATE / "peers-venv"
USER = "builder"
BINFMT_OK = ("grep -qsx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 &&"
             " grep -qs '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64")
# The same registration archfarm makes when the handler lacks the F flag (hosts/steps.py).
sys.path.insert(0, str(REPO))
from provision.hosts.steps import (  # noqa: E402
    _register_fixed,
    render_daemon_json,
    with_containerd_store,
)

# What archfarm writes on the lab's Debian 13 nodes (Docker 26): its defaults, the containerd
# image store on.
DAEMON_JSON = with_containerd_store(render_daemon_json([], []))

REGISTER = _register_fixed("aarch64")


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("cwd", REPO)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def must(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = sh(cmd, **kw)
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = sh(cmd, **kw)
    return time.perf_counter() - start, proc


def peers_venv() -> None:
    if (PEERS / "bin" / "pyinfra").exists() and (PEERS / "bin" / "ansible-playbook").exists():
        return
    print(f"making {PEERS} with ansible-core and pyinfra from PyPI ...", flush=True)
    STATE.mkdir(parents=True, exist_ok=True)
    must([sys.executable, "-m", "venv", str(PEERS)], "venv")
    must([str(PEERS / "bin" / "pip"), "install", "-q", "ansible-core", "pyinfra"], "pip install")


def peer_versions() -> str:
    out = sh([str(PEERS / "bin" / "pip"), "list", "--format=json"]).stdout
    have = {p["name"].lower(): p["version"] for p in json.loads(out or "[]")}
    return f"ansible-core {have.get('ansible-core')}, pyinfra {have.get('pyinfra')}"


def project_of(farm: str) -> str:
    """Each bench farm has a project of its own: a fresh project's regional quota
    (IN_USE_ADDRESSES 8, modelled by the fake) does not hold bench2 and bench8 together."""
    return f"archfarm-{farm}"


class Farm:
    def __init__(self, name: str, vms: int, workdir: Path):
        self.name, self.vms, self.dir = name, vms, workdir / name
        self.project = project_of(name)
        self.dir.mkdir(parents=True)
        self.key = STATE / f"key-{name}"  # archfarm makes it if missing
        self.inventory = self.dir / "farm.yaml"
        half = vms // 2
        self.inventory.write_text(f"""farm: {name}
gcp:
  project: {self.project}
  zones: [us-central1-a, us-central1-b, us-central1-f]
  api_endpoint: {ENDPOINT}
  ssh_source_ranges: [127.0.0.1/32]
ssh:
  user: {USER}
  private_key: {self.key}
docker:
  package: docker.io
nodes:
  - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-2, count: {half}}}
  - {{name: x86, platform: linux/amd64, machine_type: n2-standard-2, count: {vms - half}}}
""")
        self.created = False

    def inv(self, *args: str) -> list[str]:
        return [*INV, *args, "-i", str(self.inventory)]

    @property
    def cache(self) -> Path:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return root / "archfarm" / self.project / self.name

    @property
    def known_hosts(self) -> Path:
        return self.cache / "known_hosts"

    def addresses(self) -> list[str]:
        nodes = json.loads((self.cache / "hosts.json").read_text())["nodes"]
        ips = sorted(n["address"] for n in nodes.values())
        if len(ips) != self.vms:
            sys.exit(f"{self.name}: {len(ips)} hosts in archfarm's cache, expected {self.vms}")
        return ips

    def write_peers(self) -> None:
        ips = self.addresses()
        common = (f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
                  " -o BatchMode=yes")
        (self.dir / "hosts.ini").write_text(
            "[farm]\n" + "".join(f"{ip}\n" for ip in ips) + "[farm:vars]\n"
            f"ansible_user={USER}\nansible_ssh_private_key_file={self.key}\n"
            f"ansible_ssh_common_args={common}\nansible_python_interpreter=/usr/bin/python3\n")
        (self.dir / "playbook.yml").write_text(PLAYBOOK.replace("@OK@", BINFMT_OK).replace(
            "@DAEMON@\n", "".join(f"      {line}\n" for line in DAEMON_JSON.splitlines()))
                                            .replace("@REGISTER@", shlex.quote(REGISTER)))
        (self.dir / "inventory.py").write_text(
            f"hosts = [(ip, {{'ssh_user': {USER!r}, 'ssh_key': {str(self.key)!r},"
            f" 'ssh_known_hosts_file': {str(self.known_hosts)!r},"
            f" 'ssh_strict_host_key_checking': 'yes', '_sudo': True}})"
            f" for ip in {ips!r}]\n")
        (self.dir / "deploy.py").write_text(DEPLOY.format(daemon=DAEMON_JSON, ok=BINFMT_OK,
                                                          register=REGISTER, user=USER))

    # -- the four ways to look at the farm --------------------------------------------------

    def archfarm(self) -> float:
        took, proc = timed(self.inv("configure"))
        changed = {c.strip() for c in re.findall(r"changed: ([^│\n]+)", proc.stdout)}
        if proc.returncode == 0 and changed == {"qemu/binfmt"}:
            raise Drift("archfarm re-registered binfmt qemu-aarch64")
        if proc.returncode != 0 or "changed:" in proc.stdout:
            sys.exit(f"inv configure on {self.name} not a clean no-op (exit"
                     f" {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        return took

    def ansible(self, control_dir: Path, expect_changes: bool = False) -> float:
        control_dir.mkdir(exist_ok=True)
        cfg = self.dir / "ansible.cfg"
        cfg.write_text(f"""[defaults]
forks = 20
host_key_checking = True
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s
control_path_dir = {control_dir}
""")
        env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(self.dir / "ansible-tmp")}
        took, proc = timed([str(PEERS / "bin" / "ansible-playbook"), "-i",
                            str(self.dir / "hosts.ini"), str(self.dir / "playbook.yml")],
                           env=env)
        recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)"
                           r"\s+failed=(\d+)", proc.stdout, re.M)
        changed_tasks = {t.split("]")[0] for t in proc.stdout.split("TASK [")[1:]
                         if "changed: [" in t}
        if (not expect_changes and proc.returncode == 0 and changed_tasks
                and all(t.startswith("binfmt") for t in changed_tasks)
                and all(u == "0" and f == "0" for _, _, u, f in recap)):
            raise Drift("ansible re-registered binfmt qemu-aarch64")
        clean = (proc.returncode == 0 and len(recap) == self.vms
                 and all(u == "0" and f == "0" and (expect_changes or c == "0")
                         for _, c, u, f in recap))
        if not clean:
            sys.exit(f"ansible-playbook on {self.name} failed or changed something (exit"
                     f" {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return took

    def pyinfra(self, expect_changes: bool = False) -> float:
        took, proc = timed([str(PEERS / "bin" / "pyinfra"), str(self.dir / "inventory.py"),
                            str(self.dir / "deploy.py"), "-y"], cwd=self.dir)
        out = proc.stdout + proc.stderr
        total = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
        connected = len(re.findall(r"\]\s+Connected", out))
        ops = re.findall(r"^ {4}(\S.*?)\s{2,}(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", out, re.M)
        changed_ops = {op for op, _, ok, _, _ in ops if ok != "-" and op != "Grand total"}
        if (not expect_changes and proc.returncode == 0 and total and total.group(3) == "-"
                and changed_ops and all(op.startswith("binfmt") for op in changed_ops)):
            raise Drift("pyinfra re-registered binfmt qemu-aarch64")
        if (proc.returncode != 0 or not total or total.group(3) != "-"
                or (total.group(2) != "-" and not expect_changes) or connected != self.vms):
            sys.exit(f"pyinfra on {self.name} failed or changed something (exit"
                     f" {proc.returncode}):\n{out[-4000:]}")
        return took

    def floor(self) -> float:
        cmds = [["ssh", "-o", "StrictHostKeyChecking=yes",
                 "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "ControlMaster=no",
                 "-o", "ControlPath=none", "-o", "BatchMode=yes", "-i", str(self.key),
                 f"{USER}@{ip}", "true"] for ip in self.addresses()]
        start = time.perf_counter()
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for c in cmds]
        codes = [p.wait() for p in procs]
        took = time.perf_counter() - start
        if any(codes):
            sys.exit(f"floor ssh failed on {self.name}: {codes}"
                     f" {[p.stderr.read().decode()[-300:] for p in procs]}")
        return took


class Drift(Exception):
    """The only change was the binfmt handler. In the lab, /proc/sys/fs/binfmt_misc is the
    machine's own, shared by every lab VM of every farm, and it gets re-registered from
    outside (seen while another farm's VMs were booting); archfarm then re-adds the F flag.
    Not a no-op, so the round is discarded and run again (and counted)."""


PLAYBOOK = """- hosts: farm
  gather_facts: false
  become: true
  vars:
    daemon_json: |
@DAEMON@
  tasks:
    - name: docker.io, docker-cli, qemu-user-static, binfmt-support
      ansible.builtin.apt:
        name: [docker.io, docker-cli, qemu-user-static, binfmt-support]
        state: present
        install_recommends: false
        update_cache: true
        cache_valid_time: 86400
    - name: daemon.json
      ansible.builtin.copy:
        content: "{{ daemon_json }}"
        dest: /etc/docker/daemon.json
        mode: "0644"
      notify: restart docker
    - name: docker running and enabled
      ansible.builtin.service:
        name: docker
        state: started
        enabled: true
        use: systemd
    - name: builder in the docker group
      ansible.builtin.user:
        name: builder
        groups: [docker]
        append: true
    - name: binfmt qemu-aarch64 with F
      ansible.builtin.shell: |
        @OK@ && exit 0
        echo registering
        sh -c @REGISTER@
      register: binfmt
      changed_when: "'registering' in binfmt.stdout"
  handlers:
    - name: restart docker
      ansible.builtin.service:
        name: docker
        state: restarted
        use: systemd
"""

DEPLOY = '''from io import StringIO

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd

apt.packages(name="docker.io, docker-cli, qemu-user-static, binfmt-support",
             packages=["docker.io", "docker-cli", "qemu-user-static", "binfmt-support"],
             update=True, cache_time=86400, no_recommends=True)
daemon = files.put(name="daemon.json", src=StringIO({daemon!r}),
                   dest="/etc/docker/daemon.json", mode="644")
systemd.service(name="docker running and enabled", service="docker", running=True,
                enabled=True)
systemd.service(name="restart docker for daemon.json", service="docker", restarted=True,
                _if=daemon.did_change)
server.user(name="{user} in the docker group", user="{user}", groups=["docker"], append=True)
if host.get_fact(Command, {ok!r} + " && echo yes || echo no") != "yes":
    server.shell(name="binfmt qemu-aarch64 with F", commands=[{register!r}])
'''


def close_masters(control_dir: Path) -> None:
    """End the ControlPersist masters ansible left in this directory (ours, by socket)."""
    for sock in control_dir.glob("*"):
        sh(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"])
    shutil.rmtree(control_dir, ignore_errors=True)


LOADS: list[float] = []  # the 1-minute load average after each measured round
DRIFTS: Counter[str] = Counter()  # rounds discarded per farm (see Drift)


def stats(xs: list[float]) -> tuple[float, float]:
    return statistics.median(xs), min(xs)


def load_note() -> str:
    """Load average and what used the CPU over the last half second (top's second frame)."""
    load = os.getloadavg()
    out = sh(["top", "-b", "-c", "-n", "2", "-d", "0.5", "-w", "200"]).stdout
    frame = out[out.rfind("top - "):]
    rows = [line.split(None, 11) for line in frame.splitlines()]
    busy = [f"{r[8]}% {r[11][:90]}" for r in rows
            if len(r) == 12 and r[0].isdigit() and float(r[8].replace(",", ".")) >= 5.0]
    return (f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; busy processes:"
            + "".join(f"\n    {line}" for line in busy[:8]))


def measure(farm: Farm, repeat: int, peers: bool) -> dict[str, list[float]]:
    """Warm-up (not counted, also proves each tool sees a converged farm), then `repeat`
    interleaved rounds, so drifting load from outside hits every tool alike. Without `peers`
    (--quick) only archfarm and the floor, with no warm-up: a handler reset since provision is
    a Drift, and that round runs again."""
    kept = farm.dir / "cp-kept"
    if peers:
        farm.write_peers()
        sh(farm.inv("configure"))  # converges a handler reset since (see Drift)
        for _ in range(2):  # pyinfra's first runs may apt-get update and touch its stamp
            farm.pyinfra(expect_changes=True)
            farm.ansible(kept, expect_changes=True)
    tools = ("archfarm", "pyinfra", "ansible", "ansible-kept", "floor") if peers else (
        "archfarm", "floor")
    times: dict[str, list[float]] = {k: [] for k in tools}
    i = 0
    while i < repeat:
        fresh = farm.dir / f"cp-{i}-{DRIFTS[farm.name]}"
        try:
            took = {"archfarm": farm.archfarm()}
            if peers:
                took["pyinfra"] = farm.pyinfra()
                took["ansible"] = farm.ansible(fresh)
                close_masters(fresh)
                took["ansible-kept"] = farm.ansible(kept)
            took["floor"] = farm.floor()
        except Drift as e:
            close_masters(fresh)
            DRIFTS[farm.name] += 1
            print(f"  {farm.name}: round discarded, {e} (reset by a VM boot elsewhere in the"
                  " lab); running it again", flush=True)
            if DRIFTS[farm.name] > 2 * repeat:
                sys.exit("binfmt handler reset too often: the lab is too busy to measure")
            continue
        for key, value in took.items():
            times[key].append(value)
        i += 1
        LOADS.append(os.getloadavg()[0])
        print(f"  {farm.name} round {i}: " + ", ".join(f"{k} {v[-1]:.2f}"
                                                            for k, v in times.items())
              + f"; load average (1 min) {LOADS[-1]:.1f}", flush=True)
    close_masters(kept)
    return times


def cold(workdir: Path, farms: list[Farm]) -> tuple[float, float]:
    """First real configure on 2 fresh VMs, and the playbook's first run on 2 others."""
    arch, ans = Farm("benchcold", 2, workdir), Farm("benchcoldansible", 2, workdir)
    for farm in (arch, ans):
        farms.append(farm)
        farm.created = True
        must(farm.inv("vms"), f"inv vms ({farm.name})")
    for farm in (arch, ans):  # host keys cached, first boot settled, nothing installed
        proc = must(farm.inv("configure", "--check"), f"inv configure --check ({farm.name})")
        assert "would change" in proc.stdout, proc.stdout
    took_arch, proc = timed(arch.inv("configure"))
    if proc.returncode != 0:
        sys.exit(f"cold inv configure failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    ans.write_peers()
    took_ans = ans.ansible(ans.dir / "cp", expect_changes=True)
    close_masters(ans.dir / "cp")
    # Both ways leave a host archfarm calls converged.
    for farm in (arch, ans):
        proc = must(farm.inv("configure", "--check"), f"inv configure --check ({farm.name})")
        if "would change" in proc.stdout:
            print(f"  note: after the cold run {farm.name} is not converged for archfarm:\n"
                  + proc.stdout[-1500:])
    return took_arch, took_ans


ROWS = [("archfarm", "archfarm (`inv configure`)"), ("pyinfra", "pyinfra"),
        ("ansible", "Ansible, fresh control masters"),
        ("ansible-kept", "Ansible, masters kept from the last run"),
        ("floor", "floor: one `ssh ... true` per host, all at once")]


def print_figures(results: dict[int, dict[str, list[float]]], repeat: int) -> None:
    """The table (a column per farm size) and the targets, judged at the largest size."""
    counts = sorted(results)
    top = max(counts)
    med = {n: {k: stats(v)[0] for k, v in r.items()} for n, r in results.items()}
    print(f"no-op on converged VMs, median (min) of {repeat} runs, seconds;"
          f" ratio = tool / archfarm at {top} VMs\n")
    print("| tool | " + " | ".join(f"{n} VMs" for n in counts) + f" | ratio at {top} |")
    print("|---" * (len(counts) + 2) + "|")
    for key, label in ROWS:
        if key in med[top]:
            cells = [f"{stats(results[n][key])[0]:.2f} ({stats(results[n][key])[1]:.2f})"
                     for n in counts] + [f"{med[top][key] / med[top]['archfarm']:.1f}x"]
        else:
            cells = [SKIPPED_QUICK] * len(counts) + ["-"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n1-minute load average after each measured round: {min(LOADS):.1f} to"
          f" {max(LOADS):.1f} (median {statistics.median(LOADS):.1f}) on"
          f" {os.cpu_count()} cores")
    print(f"rounds discarded because the shared binfmt handler was reset: {dict(DRIFTS)}")
    a = med[top]["archfarm"]
    for name, key, factor in (("archfarm <= 1/2 pyinfra", "pyinfra", 1 / 2),
                              ("archfarm <= 1/8 Ansible", "ansible", 1 / 8),
                              ("archfarm <= 2x floor", "floor", 2)):
        if key not in med[top]:
            print(f"target {name}: {SKIPPED_QUICK}")
            continue
        limit = med[top][key] * factor
        print(f"target {name}, at {top} VMs: {a:.2f} s vs {limit:.2f} s ->"
              f" {'met' if a <= limit else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, help="measured rounds (default 5; 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="leave the bench farms up")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold runs")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, repeat=(5, 1))
    peers = not args.quick  # --quick installs nothing from PyPI
    with_cold = not (args.no_cold or args.quick)

    if peers:
        peers_venv()
    must([*INV, "lab.up"], "inv lab.up")
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-configure-"))
    farms: list[Farm] = []
    try:
        farms.append(Farm("bench2", 2, workdir))
        if not args.quick:  # --quick: the smallest farm only
            farms.append(Farm("bench8", 8, workdir))
        started = time.strftime("%Y-%m-%d %H:%M")
        versions = peer_versions() if peers else SKIPPED_QUICK
        print(f"{started}; peers: {versions}; work dir {workdir}", flush=True)
        cold_projects = "" if not with_cold else ", {} for the cold runs".format(
            ", ".join(project_of(n) for n in ("benchcold", "benchcoldansible")))
        print("each farm in its own project (a fresh project's regional quota, 8 in-use"
              " addresses, does not hold them together): "
              + ", ".join(f"{f.name} -> {f.project}" for f in farms) + cold_projects,
              flush=True)
        failed: list[str] = []

        def provision(farm: Farm) -> None:
            farm.created = True
            for _ in range(2):  # a second run converges what a first one left
                proc = sh(farm.inv("provision"))
                if proc.returncode == 0:
                    return
                print(f"inv provision {farm.name} failed (exit {proc.returncode}):\n"
                      f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}", flush=True)
            failed.append(farm.name)

        threads = [threading.Thread(target=provision, args=(f,)) for f in farms]
        begin = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failed:
            sys.exit(f"inv provision failed twice on {', '.join(failed)}")
        together = " at once" if len(farms) > 1 else ""
        print(f"provisioned {' and '.join(f.name for f in farms)}{together} in"
              f" {time.perf_counter() - begin:.0f} s", flush=True)

        print(f"before the measured runs: {load_note()}", flush=True)
        results = {f.vms: measure(f, args.repeat, peers) for f in farms}
        print(f"after the measured runs: {load_note()}", flush=True)
        cold_times = cold(workdir, farms) if with_cold else None

        with figures("configure.py, no-op inv configure beside its peers", args.quick):
            print_figures(results, args.repeat)
            if cold_times:
                print(f"\ncold, 2 fresh booted VMs, first run with every install: archfarm"
                      f" `inv configure` {cold_times[0]:.1f} s; ansible-playbook"
                      f" {cold_times[1]:.1f} s (one run each)")
            else:
                print(f"\ncold runs: {SKIPPED_QUICK if args.quick else 'skipped (--no-cold)'}")
    finally:
        if args.keep:
            print(f"kept: {', '.join(f'{f.name} ({f.inventory})' for f in farms)}")
        else:
            for farm in farms:
                if farm.created:
                    proc = sh(farm.inv("destroy", "--yes"))
                    if proc.returncode != 0:
                        print(f"inv destroy {farm.name} failed (exit {proc.returncode}):\n"
                              f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
