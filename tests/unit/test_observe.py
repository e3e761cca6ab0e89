"""The nodes as a build sees them: the probe's parser, and a probe that cannot run."""

from __future__ import annotations

from provision.buildx import observe
from provision.inventory import parse

FARM = parse("farm: ob\ngcp: {project: proj-one, zones: [us-central1-a], ssh_source_ranges:"
             " [127.0.0.1/32]}\nnodes:\n  - {name: amd64, platform: linux/amd64,"
             " machine_type: n2-standard-2}\n", "ob.yaml")


def test_the_probe_reads_the_engine_version_and_the_builds_in_flight():
    assert observe.parse_probe("26.1.5\n@@ builds\n2\n") == ("26.1.5", 2)
    assert observe.parse_probe("-\n@@ builds\n0\n") == (None, 0)  # the engine did not answer
    assert observe.parse_probe("") == (None, 0)


def test_a_probe_that_cannot_run_ssh_is_a_node_that_does_not_answer(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    seen = observe.probe(FARM, "amd64")
    assert not seen.answered and seen.why.startswith("ssh could not be run"), seen


def test_affinity_is_remembered_per_context_and_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = observe.cache_key(tmp_path, None)
    observe.remember(FARM, [(key, "linux/amd64", "amd64")])
    assert observe.load_affinity(FARM) == {key: {"linux/amd64": "amd64"}}
    (tmp_path / "archfarm/proj-one/ob/affinity.json").write_text("{garbled")
    assert observe.load_affinity(FARM) == {}  # only a tie-breaker: unreadable is empty
