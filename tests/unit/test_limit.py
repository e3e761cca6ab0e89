"""`--limit`: exact node names, or a counted node's base name for all of its copies."""

import pytest
import yaml

from provision.errors import InventoryError
from provision.inventory import parse, parse_limit

FARM = parse(yaml.safe_dump({
    "farm": "demo",
    "gcp": {"project": "my-project", "zones": ["us-central1-a"]},
    "nodes": [{"name": "arm", "platform": "linux/arm64", "machine_type": "t2a-standard-1",
               "count": 2},
              {"name": "x86-2", "platform": "linux/amd64", "machine_type": "e2-small"}],
}), "demo.yaml")


def test_a_base_name_stands_for_its_counted_nodes():
    assert parse_limit("arm", FARM) == {"arm-1", "arm-2"}
    assert parse_limit("arm-2, x86-2", FARM) == {"arm-2", "x86-2"}


def test_a_name_that_merely_ends_in_a_number_is_no_base_name():
    with pytest.raises(InventoryError) as e:
        parse_limit("x86", FARM)
    assert "no node named x86" in str(e.value) and "arm-1, arm-2, x86-2" in str(e.value)


def test_no_limit_means_every_node():
    assert parse_limit(None, FARM) is None


@pytest.mark.parametrize("limit", ["", " ", ",", " , "])
def test_an_empty_limit_is_an_error_not_every_node(limit):
    """`--limit "$NODES"` with NODES unset must not act on the whole farm."""
    with pytest.raises(InventoryError) as e:
        parse_limit(limit, FARM)
    assert "names no node" in str(e.value) and "leave --limit out" in str(e.value)
