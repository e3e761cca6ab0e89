"""Against a real Compute Engine project: create one small VM, see it, destroy it.

Runs only when ARCHFARM_GCP_PROJECT names a project and Application Default Credentials exist
(`gcloud auth application-default login`); it creates a billed e2-micro for about a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision import cli

PROJECT = os.environ.get("ARCHFARM_GCP_PROJECT")
ADC = Path("~/.config/gcloud/application_default_credentials.json").expanduser()

pytestmark = pytest.mark.skipif(
    not PROJECT or not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or ADC.exists()),
    reason="needs a real project: set ARCHFARM_GCP_PROJECT and Application Default Credentials")


def test_create_status_destroy_on_real_compute_engine(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ARCHFARM_GCE_ENDPOINT", raising=False)
    source = os.environ.get("ARCHFARM_GCP_SSH_SOURCE", "203.0.113.7/32")
    inventory = tmp_path / "real.yaml"
    inventory.write_text(f"""
farm: archfarm-ci
gcp:
  project: {PROJECT}
  zones: [us-central1-a, us-central1-b, us-central1-f]
  ssh_source_ranges: [{source}]
ssh: {{private_key: {tmp_path}/key}}
nodes:
  - {{name: x86, platform: linux/amd64, machine_type: e2-micro, disk_gb: 10, max_run_hours: 1}}
""")
    try:
        assert cli.vms(str(inventory), False, None, False, False) == 0
        assert cli.vms(str(inventory), False, None, False, False) == 0  # converged
        assert cli.status(str(inventory), True) == 0
        assert '"status": "RUNNING"' in capsys.readouterr().out
    finally:
        assert cli.destroy(str(inventory), True, False, False) == 0
