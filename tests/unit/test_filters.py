"""The list filter language on plain resource dicts (both GCE dialects)."""

import pytest

from provision.fakegce.errors import InvalidField
from provision.fakegce.filters import compile_filter

VM = {"name": "web-1", "status": "RUNNING", "labels": {"app": "x", "tier": "front"},
      "scheduling": {"automaticRestart": False}, "cpus": 4}


@pytest.mark.parametrize("text, expected", [
    ('labels.app = "x"', True),
    ("labels.app = y", False),
    ('(labels.app = "x") AND (labels.tier = front)', True),
    ("labels.app = x (labels.tier = back)", False),  # juxtaposition is AND
    ("labels.app = x AND (status = STAGING OR status = RUNNING)", True),
    ("status = STAGING OR status = STOPPING", False),
    ("labels.owner:*", False),
    ("labels.tier:*", True),
    ("name:web", True),
    ("NOT labels.owner:*", True),
    ("status != RUNNING", False),
    ("scheduling.automaticRestart = false", True),
    ("cpus >= 4", True),
    ("cpus > 4", False),
    ("name eq web-.*", True),
    ("name eq 'web'", False),  # legacy regexes match the whole value
    ("name ne web-.*", False),
    ("", True),
])
def test_filter(text, expected):
    assert compile_filter(text)(VM) is expected


@pytest.mark.parametrize("text", ["labels.app =", "(labels.app = x", "= x", "name eq ("])
def test_malformed_filter_is_invalid_field(text):
    with pytest.raises(InvalidField):
        compile_filter(text)
