"""Register's local side with the real docker CLI (no engine needed for contexts): archfarm
takes and removes only what carries its own farm's marker. DOCKER_CONFIG points under
tmp_path (conftest), and so does the ssh directory here."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from provision.buildx import register
from provision.buildx.tasks import build as build_task
from provision.errors import UserError
from provision.inventory import parse

from .conftest import run_json

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="needs the docker CLI")


def farm(name: str, project: str = "proj-one"):
    return parse(f"""
farm: {name}
gcp: {{project: {project}, zones: [us-central1-a], ssh_source_ranges: [10.0.0.0/8]}}
nodes:
  - {{name: arm64-1, platform: linux/arm64, machine_type: t2a-standard-4}}
""", "f.yaml")


@pytest.fixture(autouse=True)
def ssh_home(tmp_path, monkeypatch):
    monkeypatch.setattr(register, "ssh_dir", lambda: tmp_path / "ssh")


def make_context(name: str, description: str) -> None:
    # A closed loopback port: whatever lists contexts (buildx ls) may try to reach them.
    subprocess.run(["docker", "context", "create", name, "--docker",
                    "host=ssh://builder@127.0.0.1:9", "--description", description],
                   check=True, capture_output=True)


def context_names() -> set[str]:
    out = subprocess.run(["docker", "context", "ls", "--format", "{{.Name}}"], check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


def test_destroying_farm_ci_leaves_farm_ci_arm_alone():
    ci, ci_arm = farm("ci"), farm("ci-arm")
    make_context("archfarm-ci-arm64-1", register.marker(ci))
    make_context("archfarm-ci-arm-arm64-1", register.marker(ci_arm))
    register.unregister(ci, check=False)
    assert "archfarm-ci-arm-arm64-1" in context_names()
    assert "archfarm-ci-arm64-1" not in context_names()


def test_a_same_named_farm_of_another_project_is_refused_and_left_alone():
    ours, theirs = farm("ci", "proj-one"), farm("ci", "proj-two")
    make_context("archfarm-ci-arm64-1", register.marker(theirs))
    with pytest.raises(UserError, match="whose description is .archfarm farm=ci project=proj-two"):
        register.register(ours, {}, [], check=True)
    register.unregister(ours, check=False)
    assert "archfarm-ci-arm64-1" in context_names()


def test_a_node_taken_out_of_the_inventory_loses_its_context_and_nothing_else():
    ci, ci_arm = farm("ci"), farm("ci-arm")
    make_context("archfarm-ci-arm64-1", register.marker(ci))
    make_context("archfarm-ci-arm64-2", register.marker(ci))  # arm64-2 left the inventory
    make_context("archfarm-ci-arm-arm64-9", register.marker(ci_arm))
    make_context("archfarm-ci-by-hand", "")
    planned = register.register(ci, {}, [], check=True)
    assert {k: (r.changed, r.note) for k, r in planned.results.items()} == {"arm64-2": (
        1, "no longer in the inventory: would remove docker context archfarm-ci-arm64-2")}
    assert "archfarm-ci-arm64-2" in context_names()
    done = register.register(ci, {}, [], check=False)
    assert done.results["arm64-2"].changed == 1 and not done.results["arm64-2"].failed
    assert "archfarm-ci-arm64-2" not in context_names()
    assert {"archfarm-ci-arm64-1", "archfarm-ci-arm-arm64-9",
            "archfarm-ci-by-hand"} <= context_names()
    assert register.register(ci, {}, [], check=False).results == {}


@pytest.mark.parametrize("args, message", [
    ({"context_dir": None, "tag": "r/x:1"}, "--context DIR and --tag REF are both needed"),
    ({"tag": ""}, "--context DIR and --tag REF are both needed"),
    ({"tag": "r/x:1,push=false"}, "not an image reference"),
    ({"tag": "r/x@sha256:00"}, "not an image reference"),
    ({"tag": "-r/x:1"}, "not an image reference"),
])
def test_build_without_context_or_with_a_bad_tag_is_bad_input(inventory, capsys, tmp_path,
                                                              args, message):
    from provision.buildx.request import Request

    request = Request(**{"context_dir": tmp_path, "push": True, **args})
    code, out = run_json(build_task, inventory=str(inventory), request=request, capsys=capsys)
    assert code == 2 and message in out["error"]


def test_register_then_destroy_gives_a_crlf_ssh_config_back_byte_for_byte(tmp_path):
    ci = farm("ci")
    config = tmp_path / "ssh" / "config"
    config.parent.mkdir()
    original = b"Host *\r\n  ServerAliveInterval 60\r\n\r\nHost work\r\n  HostName 1.2.3.4\r\n"
    config.write_bytes(original)
    register.register(ci, {}, [], check=False)
    assert register.include_line().encode() + b"\r\n" in config.read_bytes()
    mine = b"Host mine\r\n  HostName 198.51.100.7\r\n"  # the user adds a line above archfarm's
    config.write_bytes(mine + config.read_bytes())
    removed = register.unregister(ci, check=False).results["ssh config"]
    assert config.read_bytes() == mine + original
    # two things went: the farm's own file and the Include line, each counted
    assert removed.changes == [str(register.farm_config("ci")), "Include"]


def test_the_refusal_names_the_conflicting_context_and_its_description():
    """The farm registered before (its ssh config carries its own marker); a context of its
    name now carries someone else's description: that context is what the message names."""
    ours = farm("lab")
    register.farm_config("lab").parent.mkdir(parents=True)
    register.farm_config("lab").write_text(register.render(ours, {}))
    make_context("archfarm-lab-arm64-1", "Bob's arm box")
    with pytest.raises(UserError) as refused:
        register.register(ours, {}, [], check=True)
    message = str(refused.value)
    assert "docker context archfarm-lab-arm64-1" in message and "Bob's arm box" in message
    assert register.marker(ours) not in message and "lab.conf" not in message
    assert "docker context rm archfarm-lab-arm64-1" in message  # the fix, when it is yours
