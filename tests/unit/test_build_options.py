"""The buildx options of a build, as flags: the attestations asked for (command line over the
inventory), a bake target's fields turned into flags, the stages a Dockerfile names, and where
an `index:` annotation goes (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.buildx import attest
from provision.buildx.bake import _attest, _csv_list
from provision.buildx.build import merge_args
from provision.buildx.buildlog import Where, why_failed
from provision.buildx.pieces import common_args
from provision.buildx.request import Request, stages_of
from provision.errors import InventoryError
from provision.inventory import parse
from provision.runner import Outcome


def farm(buildx: str = ""):
    return parse("farm: bx\ngcp: {project: proj-one, zones: [us-central1-a]}\n"
                 + (f"buildx: {{{buildx}}}\n" if buildx else "")
                 + "nodes:\n  - {name: a, platform: linux/amd64, machine_type: n2-standard-2}\n",
                 "bx.yaml")


@pytest.mark.parametrize("inventory,given,expected", [
    ("", (None, None), (None, None)),  # buildx's own default, nothing checked
    ("provenance: max, sbom: true", (None, None), ("mode=max", "true")),
    ("provenance: off", (None, None), ("false", None)),
    ("provenance: max, sbom: true", ("false", "false"), ("false", "false")),  # flags win
    ("sbom_generator: 127.0.0.1:5000/lab/sbom-scanner:1", (None, "true"),
     (None, "generator=127.0.0.1:5000/lab/sbom-scanner:1")),
    ("sbom: true, sbom_generator: r/s:1", (None, "generator=o/t:2"), (None, "generator=o/t:2")),
])
def test_the_attestations_asked_for(inventory, given, expected):
    assert attest.defaults(farm(inventory), *given) == expected


def test_only_attestations_asked_for_are_checked_in_the_index():
    assert attest.wanted(None, None) == []
    assert attest.wanted("mode=max", "false") == ["provenance"]
    assert attest.wanted("false", "generator=x/y:1") == ["sbom"]


def test_an_inventory_attestation_default_is_strict():
    with pytest.raises(InventoryError) as e:
        farm("provenance: maximal")
    assert "buildx.provenance" in str(e.value)
    with pytest.raises(InventoryError):
        farm('sbom: "yes"')


def test_a_bake_targets_attest_entries_become_the_two_flags():
    assert _attest(["type=provenance,mode=max", "type=sbom"]) == ("mode=max", "true")
    assert _attest([{"type": "sbom", "generator": "r/s:1"}]) == (None, "generator=r/s:1")
    assert _attest(["type=provenance,disabled=true"]) == ("false", None)
    assert _csv_list([{"id": "a", "src": "f"}, "default"]) == ["id=a,src=f", "default"]


def test_every_option_reaches_the_build_and_index_annotations_the_merge():
    req = Request(context_dir=Path("ctx"), tag="127.0.0.1:5000/a:1", push=True,
                  also_tags=["127.0.0.1:5000/a:latest"], stage="test", labels=["k=v"],
                  secrets=["id=s,src=f"], ssh=["default"], no_cache=True, pull=True,
                  annotations=["index:org.a=1", "org.b=2"], provenance="mode=max",
                  sbom="true", cache_from=["type=registry,ref=r/c:1"])
    args = common_args(req, Path("m.json"))
    for flag in ("--target", "test", "--label", "k=v", "--secret=id=s,src=f", "--ssh=default",
                 "--no-cache", "--pull", "--annotation=org.b=2", "--provenance=mode=max",
                 "--sbom=true", "--cache-from=type=registry,ref=r/c:1"):
        assert flag in args, flag
    assert "--annotation=index:org.a=1" not in args  # a one-platform build has no such index
    merge = merge_args(req, {"linux/amd64": Outcome(extra={"digest": "sha256:" + "a" * 64})})
    assert merge[3:9] == ["--tag", "127.0.0.1:5000/a:1", "--tag", "127.0.0.1:5000/a:latest",
                          "--annotation=index:org.a=1", "127.0.0.1:5000/a@sha256:" + "a" * 64]


def test_the_stages_of_a_dockerfile():
    text = ("# syntax=docker/dockerfile:1\nFROM r/b:1 AS Build\nRUN make\n"
            "from --platform=$BUILDPLATFORM \\\n   r/c:1 as test\nFROM scratch\n"
            "COPY --from=build /x /x\n")
    assert stages_of(text) == ["build", "test"]


def test_an_engine_without_the_containerd_store_says_what_it_needs():
    text = ("ERROR: Attestation is not supported for the docker driver.\nSwitch to a different"
            " driver, or turn on the containerd image store, and try again.\n")
    why = why_failed(text, Where("node a", "archfarm-bx-a"), farm())
    assert why.startswith("node a: its engine cannot export attestations"), why
    assert "docker.containerd_store" in why
