"""Property tests: whatever the inventory holds, parsing gives a Farm or an InventoryError."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.errors import InventoryError
from provision.inventory import Farm, parse

VALID = {
    "farm": "demo",
    "gcp": {"project": "my-project", "zones": ["us-central1-a"],
            "ssh_source_ranges": ["203.0.113.7/32"]},
    "nodes": [{"name": "arm", "platform": "linux/arm64", "machine_type": "t2a-standard-4"}],
}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def outcome(text: str) -> object:
    try:
        return parse(text, "prop.yaml")
    except InventoryError as e:
        assert e.file == "prop.yaml" and e.fix
        return e


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_else(text):
    outcome(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["farm", "gcp", "nodes", "ssh", "docker", "extra"]), values)
def test_any_value_at_a_top_level_key(key, value):
    doc = {**VALID, key: value}
    assert isinstance(outcome(yaml.safe_dump(doc)), Farm | InventoryError)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["name", "platform", "machine_type", "count", "zones", "spot",
                        "max_run_hours", "disk_gb", "typo"]), values)
def test_any_value_at_a_node_key(key, value):
    node = {**VALID["nodes"][0], key: value}
    assert isinstance(outcome(yaml.safe_dump({**VALID, "nodes": [node]})), Farm | InventoryError)


def test_the_valid_document_parses():
    assert isinstance(outcome(yaml.safe_dump(VALID)), Farm)
