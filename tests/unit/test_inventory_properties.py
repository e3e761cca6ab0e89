"""Property tests: whatever the inventory holds, parsing either gives a Farm holding exactly the
values written, or one InventoryError whose key exists in the input (or is a required key of a
mapping that does), whose line is in the document and whose message is one line with a fix."""

from __future__ import annotations

import re

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.errors import InventoryError
from provision.inventory import Farm, key_text, parse

VALID = {
    "farm": "demo",
    "gcp": {"project": "my-project", "zones": ["us-central1-a"],
            "ssh_source_ranges": ["203.0.113.7/32"]},
    "nodes": [{"name": "arm", "platform": "linux/arm64", "machine_type": "t2a-standard-4"}],
}
REQUIRED = {"farm", "gcp", "nodes", "project", "zones", "name", "platform", "machine_type"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
# Values the schema accepts somewhere, so that a fair share of documents parse.
plausible = st.one_of(
    st.integers(min_value=-5, max_value=800), st.booleans(),
    st.sampled_from(["t2a-standard-4", "c4a-standard-8", "n2-standard-2", "linux/amd64",
                     "linux/arm64", "us-central1-a", "node-2", "docker.io", "10.0.0.0/8",
                     "0.0.0.0/0", "10.0.0.1/8", "pd-ssd", "", "3", "true"]),
    st.lists(st.sampled_from(["us-central1-a", "us-east1-b", "europe-west4-a"]), max_size=3))


def key_paths(value: object, loc: tuple = ()) -> set[str]:
    """Every key path in a document as messages write it, plus the required keys it lacks."""
    out = {key_text(loc)}
    if isinstance(value, dict):
        out |= {key_text((*loc, k)) for k in REQUIRED}
        for k, v in value.items():
            out |= key_paths(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out |= key_paths(v, (*loc, i))
    return out


def outcome(text: str, doc: object = None) -> Farm | InventoryError:
    try:
        farm = parse(text, "prop.yaml")
    except InventoryError as e:
        message = str(e)
        assert e.file == "prop.yaml" and message.startswith("prop.yaml:")
        # YAML breaks lines at \r and \r\n too (and at \x85, \u2028, \u2029)
        lines = len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text))
        assert e.line is not None and 1 <= e.line <= lines, (e.line, message)
        assert "Fix: " in message and e.fix and e.problem and "\n" not in message, message
        if doc is not None and e.key is not None:
            assert e.key in key_paths(doc), (e.key, message)
        return e
    if doc is not None:
        # What was written is what was read: no coercion, no dropped or invented keys.
        assert farm.model_dump(exclude_unset=True) == doc
    return farm


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_farm_or_a_one_line_error(text):
    outcome(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["farm", "gcp", "nodes", "ssh", "docker", "extra"]),
       st.one_of(values, plausible))
def test_any_value_at_a_top_level_key(key, value):
    doc = {**VALID, key: value}
    outcome(yaml.safe_dump(doc), doc)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["name", "platform", "machine_type", "count", "zones", "spot",
                     "max_run_hours", "disk_gb", "image", "typo"]),
    st.one_of(values, plausible), max_size=3))
def test_any_values_at_node_keys(changes):
    doc = {**VALID, "nodes": [{**VALID["nodes"][0], **changes}]}
    result = outcome(yaml.safe_dump(doc), doc)
    if "typo" in changes:
        assert isinstance(result, InventoryError)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["project", "zones", "api_endpoint", "network", "ssh_source_ranges",
                     "allow_ssh_from_anywhere", "zone"]),
    st.one_of(values, plausible, st.lists(plausible, max_size=3)), max_size=3),
    st.booleans())
def test_any_values_at_gcp_keys(changes, drop_zones):
    gcp = {**VALID["gcp"], **changes}
    if drop_zones:
        gcp.pop("zones")
    doc = {**VALID, "gcp": gcp}
    result = outcome(yaml.safe_dump(doc), doc)
    if "zone" in changes:  # misspelt: named as such, never as a missing `zones`
        assert isinstance(result, InventoryError)
        assert "missing" not in result.problem or result.key != "gcp.zones"


def test_the_valid_document_parses():
    assert isinstance(outcome(yaml.safe_dump(VALID), VALID), Farm)
