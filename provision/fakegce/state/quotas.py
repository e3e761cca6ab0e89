"""Regional quotas: a fresh project's limits, usage counted from the VMs the fake holds, and
the QUOTA_EXCEEDED an insert gets when it would go over a limit.

What counts where (docs/compute-engine.md, "Projects and regions"): a VM that is not stopped
or suspended counts its machine type's vCPUs in `CPUS` and in its family's metric (`T2A_CPUS`,
...); a Spot VM counts them in `PREEMPTIBLE_CPUS` instead once that quota is granted (limit
above 0); each external address of such a VM counts in `IN_USE_ADDRESSES`. Every VM counts in
`INSTANCES`, and its boot disk in `SSD_TOTAL_GB` (pd-ssd, pd-balanced) or `DISKS_TOTAL_GB`
(pd-standard) whatever its state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .. import catalog
from ..errors import OperationFailure, quota_exceeded
from .core import Core
from .vm import Instance, VmTable

# A fresh project's regional limits. CPUS 24, IN_USE_ADDRESSES 8, DISKS_TOTAL_GB 4096 and
# PREEMPTIBLE_CPUS 0 (not granted: Spot VMs use the CPU quotas) as in public regions.get dumps
# and error messages; SSD_TOTAL_GB 500 as the OpenShift installer's GCP quota notes report for
# several regions; the per-family limits and INSTANCES are [inferred]. Sources in
# docs/compute-engine.md, "Projects and regions". Tests change them with the `quotas` fault.
FRESH_PROJECT_LIMITS: dict[str, float] = {
    "CPUS": 24.0,
    "E2_CPUS": 24.0,
    "N2_CPUS": 24.0,
    "N2D_CPUS": 24.0,
    "C3_CPUS": 24.0,
    "T2A_CPUS": 24.0,
    "C4A_CPUS": 24.0,
    "PREEMPTIBLE_CPUS": 0.0,
    "IN_USE_ADDRESSES": 8.0,
    "STATIC_ADDRESSES": 8.0,
    "INSTANCES": 240.0,
    "SSD_TOTAL_GB": 500.0,
    "DISKS_TOTAL_GB": 4096.0,
}
CPU_FREE_STATES = {"TERMINATED", "STOPPED", "SUSPENDED"}  # a stopped VM holds no vCPUs
SSD_DISK_TYPES = {"pd-ssd", "pd-balanced"}


def family_metric(family: str) -> str:
    return f"{family.upper()}_CPUS"


class Quotas:
    def __init__(self, core: Core, vms: VmTable):
        self.core = core
        self.vms = vms

    def limit(self, region: str, metric: str) -> float:
        override = self.core.faults.quota_limit(region, metric)
        return FRESH_PROJECT_LIMITS.get(metric, 0.0) if override is None else override

    def _usage(self, region: str, vms: Iterable[Instance]) -> Counter[str]:
        preemptible_granted = self.limit(region, "PREEMPTIBLE_CPUS") > 0
        usage: Counter[str] = Counter()
        for vm in vms:
            usage["INSTANCES"] += 1
            disk = "SSD_TOTAL_GB" if vm.disk.disk_type in SSD_DISK_TYPES else "DISKS_TOTAL_GB"
            if vm.disk.disk_type in SSD_DISK_TYPES or vm.disk.disk_type == "pd-standard":
                usage[disk] += vm.disk.size_gb
            if vm.status in CPU_FREE_STATES:
                continue
            cpus = vm.machine.cpus
            if preemptible_granted and vm.scheduling.get("provisioningModel") == "SPOT":
                usage["PREEMPTIBLE_CPUS"] += cpus
            else:
                usage["CPUS"] += cpus
                usage[family_metric(vm.machine.family.name)] += cpus
            usage["IN_USE_ADDRESSES"] += sum(len(nic.access_configs) for nic in vm.nics)
        return usage

    def in_region(self, project: str, region: str) -> list[Instance]:
        """The project's VMs in a region. Call locked."""
        return [vm for vm in self.vms.project(project).instances.values()
                if catalog.region_of(vm.zone) == region]

    def region(self, project: str, region: str) -> list[tuple[str, float, float]]:
        """(metric, limit, usage) for every quota the fake keeps, in a stable order."""
        with self.core.lock:
            usage = self._usage(region, self.in_region(project, region))
            return [(metric, self.limit(region, metric), float(usage[metric]))
                    for metric in FRESH_PROJECT_LIMITS]

    def check_insert(self, project: str, zone: str,
                     new: list[Instance]) -> OperationFailure | None:
        """The failure of an insert that would take a quota over its limit. Call locked."""
        region = catalog.region_of(zone)
        before = self._usage(region, self.in_region(project, region))
        after = self._usage(region, [*self.in_region(project, region), *new])
        family = new[0].machine.family.name
        for metric in FRESH_PROJECT_LIMITS:
            limit = self.limit(region, metric)
            if after[metric] > before[metric] and after[metric] > limit:
                per_family = metric == family_metric(family)
                return quota_exceeded(region, metric, limit, family if per_family else None)
        return None
