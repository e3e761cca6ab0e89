"""`inv bake` through the real command line and the real `docker buildx bake --print`, without
a farm: the words after `bake` are its file and targets, and bad input ends with exit 2 naming
the file, the target and the fix, before anything is built."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .test_build_local import INVENTORY, REPO

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="needs the docker CLI")

DOCKERFILE = "FROM 127.0.0.1:5000/lab/debian-run:bookworm\nRUN true\n"
BAKE = """
group "default" {{ targets = ["app", "web"] }}
target "app" {{
  context = "app"
  tags = ["127.0.0.1:5000/t/app:1"]
}}
target "web" {{
  {web}
}}
"""


WEB = 'context = "app"\ntags = ["127.0.0.1:5000/t/web:1"]'


@pytest.fixture
def bake(tmp_path):
    """`inv bake ARGS -i INVENTORY --json` run in a directory holding the bake file (target
    `web`'s body given as `web`): (exit code, the JSON object, stderr)."""
    inventory = tmp_path / "farm.yaml"
    inventory.write_text(INVENTORY.format(key=tmp_path / "farm-key"))
    (tmp_path / "app").mkdir()
    (tmp_path / "app/Dockerfile").write_text(DOCKERFILE)
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def run(*args: str, web: str = WEB) -> tuple[int, dict, str]:
        (tmp_path / "docker-bake.hcl").write_text(BAKE.format(web=web))
        done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO),
                               "bake", *args, "-i", str(inventory), "--json"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(tmp)})
        assert "Traceback" not in done.stderr, done.stderr
        assert not list(tmp.glob("archfarm-build-*")), "a build started"
        lines = done.stdout.strip().splitlines()
        return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr
    return run


def error(result: tuple[int, dict, str]) -> str:
    code, out, err = result
    assert code == 2, (out, err)
    assert "Fix:" in out["error"], out
    return out["error"]


def test_a_missing_bake_file_names_it(bake):
    message = error(bake("nope.hcl"))
    assert message.startswith("bake file nope.hcl: no such file."), message


def test_an_unknown_target_names_the_file_and_the_target(bake):
    message = error(bake("docker-bake.hcl", "app", "nope"))
    assert message.startswith("bake file docker-bake.hcl: failed to find target nope."), message


def test_a_target_without_a_tag_is_bad_input(bake):
    message = error(bake("docker-bake.hcl", web='context = "app"\ntags = []'))
    assert message.startswith("docker-bake.hcl, target web: no tag to push to."), message


def test_a_target_with_a_field_the_farm_cannot_honour_is_refused_not_dropped(bake):
    message = error(bake(web=WEB + '\n'
                             'output = ["type=local,dest=out"]'))
    assert "target web: output cannot be built on the farm yet" in message, message


def test_a_targets_secret_whose_file_is_missing_names_it(bake, tmp_path):
    """buildx's own reading of the file finds it first (`failed to stat`): exit 2 with the
    fix, nothing built."""
    message = error(bake(web=WEB + f'\nsecret = ["id=a,src={tmp_path}/nope"]'))
    assert message.startswith(f"the bake file here: failed to stat {tmp_path}/nope"), message
    assert "Fix: a target's secret or ssh names a file that is missing" in message


def test_a_targets_stage_the_dockerfile_lacks_is_bad_input(bake):
    message = error(bake(web=WEB + '\ntarget = "release"'))
    assert message.startswith("the bake file buildx found here, target web: target release:"
                              " "), message
    assert "has no stage of that name" in message


def test_a_targets_malformed_attestation_names_the_field(bake):
    message = error(bake(web=WEB + '\nattest = ["type=provenance,mode=maximal"]'))
    assert "target web: attest 'mode=maximal': mode is min or max" in message, message


def test_a_target_with_secret_ssh_attest_and_cache_is_read_and_scheduled(bake, tmp_path):
    """Every field a real project uses gets past the checks: scheduled (and then not built,
    as no node of this farm is registered: exit 1, not 2)."""
    (tmp_path / "app/Dockerfile").write_text(DOCKERFILE.replace("\nRUN", " AS final\nRUN"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    web = WEB + (f'\nsecret = ["id=a,src=/etc/hostname"]\nssh = ["k={tmp_path}/k"]'
                 '\nattest = ["type=provenance,mode=max", "type=sbom"]\ntarget = "final"'
                 '\ncache-from = ["type=registry,ref=127.0.0.1:5000/t/web:cache"]'
                 '\ncache-to = ["type=registry,ref=127.0.0.1:5000/t/web:cache,mode=max"]')
    code, out, err = bake("docker-bake.hcl", "web", "--check", web=web)
    assert code == 1, (out, err)
    assert sorted(row["job"] for row in out["schedule"]) == ["web/linux/amd64",
                                                              "web/linux/arm64"], out


def test_a_platform_no_node_runs_is_bad_input_unless_emulation_is_allowed(bake):
    message = error(bake(web=WEB + '\nplatforms = ["linux/riscv64"]'))
    assert message.startswith("the bake file buildx found here, target web: platform"
                              " linux/riscv64: no node of farm t runs it natively"), message
    assert "--allow-emulation" in message


def test_the_words_after_bake_are_its_file_and_targets(bake):
    """Only `web` is read (the broken `app` is not asked for), from the file named first."""
    broken = 'context = "app"\ntags = ["bad ref"]'
    code, out, err = bake("docker-bake.hcl", "web", "--check", web=broken)
    assert code == 2 and "target web: tag 'bad ref'" in out["error"], (out, err)
    code, out, err = bake("docker-bake.hcl", "app", "--check", web=broken)
    assert code == 1, (out, err)  # read and scheduled: no node of the farm is registered
    assert list(out["targets"]) == ["app"] and out["file"] == "docker-bake.hcl"
    assert [job["job"] for job in out["schedule"]] == ["app/linux/amd64", "app/linux/arm64"]


@pytest.mark.parametrize("flag, value", [("--per-node", "0"), ("--per-node", "two"),
                                         ("--stall-timeout", "abc"),
                                         ("--stall-timeout", "-1")])
def test_run_options_that_are_not_numbers_are_bad_input(bake, flag, value):
    message = error(bake(flag, value))
    assert message.startswith(f"{flag} {value}: not a"), message


def test_the_file_flag_makes_every_word_a_target(bake):
    code, out, err = bake("--file", "docker-bake.hcl", "app", "--check")
    assert code == 1 and list(out["targets"]) == ["app"], (out, err)


def test_a_word_bake_in_another_tasks_flags_is_left_alone(tmp_path):
    """`bake` as a flag's value (here a build context named bake) is not the bake task."""
    (tmp_path / "bake").mkdir()
    (tmp_path / "farm.yaml").write_text(INVENTORY.format(key=tmp_path / "farm-key"))
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "build",
                           "-i", "farm.yaml", "--context", "bake", "--tag",
                           "127.0.0.1:5000/x/y:1", "--push", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    message = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    assert done.returncode == 2 and "bake/Dockerfile does not exist" in message, message


def test_a_target_whose_context_is_missing_names_its_context_field(bake):
    message = error(bake(web='context = "nope"\ntags = ["127.0.0.1:5000/t/web:1"]'))
    assert message.startswith('the bake file buildx found here, target web: context "nope" is'
                              " no directory. Fix: give the target's build context"), message


def test_no_bake_file_here_says_to_name_one(bake, tmp_path):
    bake("--check")  # writes the inventory
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "bake",
                           "-i", str(tmp_path / "farm.yaml"), "--json"], cwd=empty,
                          capture_output=True, text=True, timeout=60)
    message = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    assert done.returncode == 2 and "Fix: name the file (inv bake FILE)" in message, message
