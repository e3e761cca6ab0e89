"""The buildx options of a build, as flags: the attestations asked for (command line over the
inventory), a bake target's fields turned into flags, the stages a Dockerfile names, and where
an `index:` annotation goes (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.buildx import attest, docker_cli
from provision.buildx.bake import _attest, _csv_list
from provision.buildx.build import builder_argv, merge_args
from provision.buildx.buildlog import Where, why_failed
from provision.buildx.pieces import common_args
from provision.buildx.request import Request, stages_of
from provision.errors import DockerError, InventoryError
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


def test_a_one_platform_index_has_its_attestations_printed_bare(monkeypatch):
    """buildx keys `.Provenance` / `.SBOM` by platform only for an index of several: one
    platform's is printed bare, and is that platform's."""
    printed = {"Provenance": {"SLSA": {"buildType": "x"}}, "SBOM": {"SPDX": {"a": 1}}}

    def run(*args, **kw):
        field = args[-1].split(".")[1].removesuffix("}}")
        return docker_cli.Done(json.dumps(printed[field]), "")
    monkeypatch.setattr(docker_cli, "run", run)
    assert attest.read_back("r/a:1", ["linux/amd64"], ["provenance", "sbom"]) == (
        {"linux/amd64": ["provenance", "sbom"]}, None)


def test_an_attestation_missing_or_unreadable_is_the_problem(monkeypatch):
    def run(*args, **kw):
        if "{{json .SBOM}}" in args:
            raise DockerError(args, 1, "tls: handshake failure")
        return docker_cli.Done(json.dumps({"linux/arm64": {"SLSA": {"buildType": "x"}}}), "")
    monkeypatch.setattr(docker_cli, "run", run)
    held, problem = attest.read_back("r/a:1", ["linux/amd64", "linux/arm64"], ["provenance"])
    assert held == {"linux/amd64": [], "linux/arm64": ["provenance"]}
    assert problem == "the index r/a:1 lacks provenance for linux/amd64"
    _, problem = attest.read_back("r/a:1", ["linux/arm64"], ["provenance", "sbom"])
    assert "reading its sbom failed" in problem and "tls: handshake failure" in problem


def test_an_attestation_disabled_is_not_asked_for():
    assert attest.wanted("mode=max,disabled=true", "DISABLED=true") == []
    assert attest.defaults(farm("sbom_generator: r/s:1"), None, "True") == (
        None, "generator=r/s:1")


def test_a_bake_targets_entries_in_newer_buildxs_object_form():
    assert _csv_list([{"id": "default"}], ssh=True) == ["default"]
    assert _csv_list([{"id": "k", "paths": ["/a", "/b"]}], ssh=True) == ["k=/a,/b"]
    assert _attest([{"type": "sbom", "disabled": True}]) == (None, "false")
    assert _csv_list([{"type": "registry", "ref": "r/c:1", "mode": "max"}]) == [
        "type=registry,ref=r/c:1,mode=max"]


def test_the_builder_strategy_pushes_every_tag_and_annotates_its_own_index():
    req = Request(context_dir=Path("ctx"), tag="r/a:1", also_tags=["r/a:2"], push=True,
                  strategy="builder", annotations=["index:k=v"])
    argv = builder_argv(req, "bx", ["linux/amd64", "linux/arm64"], Path("m.json"))
    assert argv[-6:] == ["--tag", "r/a:1", "--tag", "r/a:2", "--push", "ctx"]
    assert "--annotation=index:k=v" in argv  # buildx makes the builder's index itself


def test_the_merge_puts_index_annotations_on_the_index_and_the_rest_on_each_image():
    merge_req = Request(context_dir=Path("ctx"), tag="r/a:1", push=True,
                        annotations=["index:k=v", "manifest-descriptor:d=1", "m=2"])
    merge_build = common_args(merge_req, Path("m.json"))
    assert "--annotation=m=2" in merge_build
    assert not [a for a in merge_build if "k=v" in a or "d=1" in a]
    merge = merge_args(merge_req, {"linux/amd64": Outcome(extra={"digest": "sha256:" + "a" * 64})})
    assert "--annotation=index:k=v" in merge and "--annotation=manifest-descriptor:d=1" in merge


def test_stage_names_survive_blanks_after_a_backslash_and_comments_inside():
    text = "FROM r/b:1 \\  \n# a comment\n  AS build\nFROM --platform=$X \\\n r/c AS Test\n"
    assert stages_of(text) == ["build", "test"]


def test_the_registry_cache_is_one_ref_per_platform_beside_the_image():
    from provision.buildx.pieces import cache_args
    from provision.buildx.request import cache_kind

    req = Request(context_dir=Path("ctx"), tag="127.0.0.1:5000/team/app:1.0", push=True,
                  cache="registry")
    assert cache_args(req, "linux/arm64") == [
        "--cache-from=type=registry,ref=127.0.0.1:5000/team/app:buildcache-linux-arm64",
        "--cache-to=type=registry,ref=127.0.0.1:5000/team/app:buildcache-linux-arm64,mode=max"]
    assert cache_args(req, None)[0].endswith("ref=127.0.0.1:5000/team/app:buildcache")
    req.cache = "none"
    assert cache_args(req, "linux/arm64") == []
    assert cache_kind(farm("cache: registry"), None) == "registry"
    assert cache_kind(farm("cache: registry"), "none") == "none"
    assert cache_kind(farm(), None) == "none"
