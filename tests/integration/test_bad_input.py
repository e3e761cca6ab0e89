"""Bad input: exit 2, one message naming file, line, key and fix; no API call; no traceback."""

from __future__ import annotations

import pytest

from provision import cli

from .conftest import LAB_LIKE, inv, run_vms

CASES = {
    "bad YAML": ("farm: t\ngcp: [unclosed\n", "not valid YAML"),
    "unknown key": (LAB_LIKE.replace("  - name: arm\n", "  - name: arm\n    colour: red\n"),
                    "nodes[0].colour: unknown key"),
    "bad farm name": (LAB_LIKE.replace("farm: t", "farm: Bad_Farm"), "farm: 'Bad_Farm'"),
    "bad node name": (LAB_LIKE.replace("name: arm", "name: ARM"), "nodes[0].name"),
    "platform mismatch": (LAB_LIKE.replace("machine_type: t2a-standard-2",
                                           "machine_type: n2-standard-2"),
                          "nodes[0].platform: platform linux/arm64 does not match"),
    "no T2A zone": (LAB_LIKE.replace("zones: [us-central1-a, us-central1-b, us-central1-f]",
                                     "zones: [us-central1-c, us-east1-b]"),
                    "gcp.zones: none of us-central1-c, us-east1-b offers T2A"),
    "duplicate nodes": (LAB_LIKE.replace("name: x86", "name: arm"), "is used twice"),
    "missing project": (LAB_LIKE.replace("  project: test-project\n", ""),
                        "gcp.project: required key is missing"),
    "bad CIDR": (LAB_LIKE.replace("127.0.0.1/32", "localhost"), "is not a CIDR range"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_inventory_exits_2_before_any_api_call(fake_gce, write_inventory, capsys, case):
    text, expected = CASES[case]
    path = write_inventory(text.replace("{", "{{").replace("}", "}}")
                           .replace("{{endpoint}}", "{endpoint}").replace("{{key}}", "{key}"))
    assert run_vms(path) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert str(path) in err and "Fix:" in err
    assert fake_gce.requests() == []


def test_the_line_is_named(write_inventory, capsys):
    path = write_inventory(LAB_LIKE.replace("machine_type: n2-standard-2",
                                            "machine_type: n2-standard-2\n    spot: maybe"))
    assert run_vms(path) == 2
    err = capsys.readouterr().err
    assert f"{path}:17: nodes[1].spot:" in err and "Fix: use true or false" in err


def test_missing_inventory_file(tmp_path, capsys):
    assert run_vms(tmp_path / "nope.yaml") == 2
    assert "no such inventory file" in capsys.readouterr().err


def test_no_firewall_and_no_source_ranges_exits_2_without_mutating(fake_gce, write_inventory,
                                                                   capsys):
    path = write_inventory(LAB_LIKE.replace("  ssh_source_ranges: [127.0.0.1/32]\n", ""))
    assert run_vms(path) == 2
    assert "gcp.ssh_source_ranges" in capsys.readouterr().err
    assert not [r for r in fake_gce.requests() if r["method"] != "instances.aggregatedList"
                and not r["method"].endswith(".get")]


def test_unknown_limit_exits_2(fake_gce, inventory, capsys):
    assert cli.vms(str(inventory), False, "nosuch", False, False) == 2
    assert "no node named nosuch" in capsys.readouterr().err


def test_missing_credentials_exits_2_and_names_the_fix(tmp_path):
    """A real project endpoint with no credentials: stop before any connection is made."""
    path = tmp_path / "real.yaml"
    path.write_text(LAB_LIKE.replace("  api_endpoint: {endpoint}\n", "")
                    .format(key=tmp_path / "k"))
    result = inv("vms", "-i", str(path), home=tmp_path,
                 env={"GOOGLE_APPLICATION_CREDENTIALS": "", "ARCHFARM_GCE_ENDPOINT": ""})
    assert result.returncode == 2
    assert "gcloud auth application-default login" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_http_to_a_non_loopback_endpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text(LAB_LIKE.format(endpoint="http://example.invalid:8089", key=tmp_path / "k"))
    assert run_vms(path) == 2
    assert "plain http" in capsys.readouterr().err


def test_bad_inventory_through_the_real_command_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("farm: t\nnodes: 3\n")
    result = inv("vms", "-i", str(path), home=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(path) in result.stderr
