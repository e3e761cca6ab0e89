"""`inv build`'s buildx options through the real command line, without a farm: a secret whose
file or variable is missing, `--ssh default` with no agent, a `--target` the Dockerfile lacks,
a malformed label, annotation or attestation, a second malformed tag: each is exit 2 naming
the option and the fix, before anything is built or pushed (no build directory is made, so no
platform ran)."""

from __future__ import annotations

import pytest

from .test_build_local import HELLO, build, exits_2  # noqa: F401 (the fixture)

TAG = "127.0.0.1:5000/t/opts:1"


def run_with(build, *options: str) -> str:  # noqa: F811
    return exits_2(build, "--context", str(HELLO), "--tag", TAG, "--push", *options)


def test_a_secret_whose_file_is_missing_names_it(build, tmp_path):  # noqa: F811
    message = run_with(build, "--secret", f"id=npm,src={tmp_path}/nope")
    assert message.startswith(f"--secret id=npm: its file {tmp_path}/nope is missing"), message


def test_a_secret_from_an_unset_variable_names_it(build, monkeypatch):  # noqa: F811
    monkeypatch.delenv("ARCHFARM_TEST_NO_SUCH_VAR", raising=False)
    message = run_with(build, "--secret", "id=tok,env=ARCHFARM_TEST_NO_SUCH_VAR")
    assert "the variable ARCHFARM_TEST_NO_SUCH_VAR is not set here" in message, message


@pytest.mark.parametrize("secret, says", [
    ("src=/etc/hostname", "--secret with keys src: no id."),
    ("id=x,type=ssh,src=/etc/hostname", "--secret with keys id, type, src: type ssh is not"
     " file or env."),
    ("id=t,value=s3cr3t", "--secret with keys id, value: unknown key value."),
])
def test_a_malformed_secret_names_its_keys_never_its_values(build, secret, says):  # noqa: F811
    message = run_with(build, "--secret", secret)
    assert message.startswith(says) and "Fix: write it as buildx does" in message, message
    assert "s3cr3t" not in message and "/etc/hostname" not in message


def test_a_secret_by_id_alone_is_the_variable_of_that_name_else_the_file(
        build, tmp_path, monkeypatch):  # noqa: F811
    """buildx's rule: `id=X` reads the variable X when set, else the file X."""
    monkeypatch.delenv("ARCHFARM_TEST_TOKEN", raising=False)
    message = run_with(build, "--secret", "id=ARCHFARM_TEST_TOKEN")
    assert message.startswith("--secret id=ARCHFARM_TEST_TOKEN: its file ARCHFARM_TEST_TOKEN"
                              " is missing"), message
    monkeypatch.setenv("ARCHFARM_TEST_TOKEN", "x")
    done, _ = build("--context", str(HELLO), "--tag", TAG, "--push", "--secret",
                    "id=ARCHFARM_TEST_TOKEN", "--json")
    assert done.returncode == 1, done.stdout  # past the checks: no node registered here


def test_ssh_default_without_an_agent_says_how_to_start_one(build, monkeypatch):  # noqa: F811
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    message = run_with(build, "--ssh", "default")
    assert message.startswith("--ssh default: no ssh-agent answers here (SSH_AUTH_SOCK is"
                              " unset)"), message
    assert "ssh-add" in message


def test_ssh_with_a_missing_key_names_it(build, tmp_path):  # noqa: F811
    message = run_with(build, "--ssh", f"git={tmp_path}/id_nope")
    assert f"{tmp_path}/id_nope does not exist" in message, message


def test_a_target_the_dockerfile_lacks_lists_its_stages(build, tmp_path):  # noqa: F811
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/Dockerfile").write_text(
        "FROM 127.0.0.1:5000/lab/debian-build:bookworm AS build\nRUN true\n"
        "FROM --platform=$BUILDPLATFORM \\\n  127.0.0.1:5000/lab/debian-run:bookworm as Test\n")
    message = exits_2(build, "--context", str(tmp_path / "ctx"), "--tag", TAG, "--push",
                      "--target", "release")
    assert "--target release:" in message and "has no stage of that name (its stages:" \
        " build, test)" in message, message


@pytest.mark.parametrize("flag,value,says", [
    ("--label", "novalue", "--label 'novalue': not KEY=VALUE"),
    ("--annotation", "=x", "--annotation '=x': not KEY=VALUE"),
    ("--provenance", "mode=maximal", "--provenance 'mode=maximal': mode is min or max"),
    ("--provenance", "lots", "--provenance 'lots': not true, false or KEY=VALUE"),
    ("--sbom", "yes please", "--sbom 'yes please': not true, false or KEY=VALUE"),
    ("--tag", "127.0.0.1:5000/t/Opts:2", "--tag '127.0.0.1:5000/t/Opts:2': not an image"),
])
def test_a_malformed_option_names_it(build, flag, value, says):  # noqa: F811
    assert says in run_with(build, flag, value)


def test_a_target_the_dockerfile_has_gets_past_the_checks(build, tmp_path):  # noqa: F811
    """The check finds stages case-insensitively: the build goes on (and fails only at the
    nodes, which this machine has no docker context for)."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/Dockerfile").write_text(
        "FROM 127.0.0.1:5000/lab/debian-run:bookworm AS Test\n")
    done, _ = build("--context", str(tmp_path / "ctx"), "--tag", TAG, "--push", "--target",
                    "TEST", "--secret", "id=h,src=/etc/hostname", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
