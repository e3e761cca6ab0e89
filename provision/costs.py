"""What a farm costs to run, estimated from the price table in costs_table.py. Pure: nodes in,
rows and totals out; no API call.

A node is priced in the region of the first of its zones that offers its machine family (the
zone archfarm tries first). Both the on-demand and the spot price are given for every node, so
the saving shows; the "planned" total bills spot nodes at spot and the others on-demand. A price
the table lacks is named ("no price for X in Y") and left out of the figures, never guessed.

A node's price is its machine, its boot disk and, unless the node is private, its external IPv4
address. With `--hours-a-day H` the month is also priced for that use beside always-on: a node
with idle_stop_minutes runs (machine and address billed) H hours a day and is stopped the rest
(a stopped VM bills only its disk); a node without it, the bastion among them, runs always.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import costs_table as table
from .errors import UserError
from .gce.catalog import family_of, zones_offering

if TYPE_CHECKING:
    from .inventory import Farm, Node


@dataclass(frozen=True)
class Shape:
    vcpus: float      # as billed (shared-core E2 types bill a fraction)
    memory_gb: float


@dataclass(frozen=True)
class NodeCost:
    """One node's price per hour; None where the table has no price."""
    node: str
    machine_type: str
    region: str
    spot: bool
    max_run_hours: int | None
    disk_gb: int
    disk_type: str
    shape: Shape | None
    machine_hourly: float | None       # on-demand
    machine_spot_hourly: float | None
    disk_hourly: float | None          # the same for spot and on-demand VMs
    missing: tuple[str, ...]           # "no price for ... in ..."
    external_ip: bool = True           # False: a private node, no address to pay for
    idle_stop: bool = False            # stops itself when idle (idle_stop_minutes)

    @property
    def ip_hourly(self) -> float:
        """The external IPv4 address, on-demand, while the VM runs."""
        return table.EXTERNAL_IPV4_HOURLY if self.external_ip else 0.0

    @property
    def ip_spot_hourly(self) -> float:
        return table.EXTERNAL_IPV4_SPOT_HOURLY if self.external_ip else 0.0

    @property
    def hourly(self) -> float:
        """On-demand, USD per hour, of what has a price."""
        return (self.machine_hourly or 0.0) + (self.disk_hourly or 0.0) + self.ip_hourly

    @property
    def spot_hourly(self) -> float:
        return (self.machine_spot_hourly or 0.0) + (self.disk_hourly or 0.0) + self.ip_spot_hourly

    @property
    def planned_hourly(self) -> float:
        """What this node is billed as the inventory asks: spot nodes at spot."""
        return self.spot_hourly if self.spot else self.hourly

    def running_hours(self, hours_a_day: float) -> float:
        """Hours a month the VM runs at that use: always, unless it stops itself when idle."""
        if not self.idle_stop:
            return table.HOURS_PER_MONTH
        return table.HOURS_PER_MONTH * hours_a_day / 24

    def monthly_use(self, hours_a_day: float) -> float:
        """The month as planned at that use: machine and address while the VM runs, the disk
        always (a stopped, TERMINATED, VM bills only its disk)."""
        disk = self.disk_hourly or 0.0
        return ((self.planned_hourly - disk) * self.running_hours(hours_a_day)
                + disk * table.HOURS_PER_MONTH)

    def to_json(self, hours_a_day: float | None = None) -> dict[str, Any]:
        monthly = _monthly({"on_demand": self.hourly, "spot": self.spot_hourly,
                            "planned": self.planned_hourly})
        monthly["always_on"] = monthly["planned"]
        if hours_a_day is not None:
            monthly["use"] = self.monthly_use(hours_a_day)
        return {
            "node": self.node, "machine_type": self.machine_type, "region": self.region,
            "spot": self.spot, "max_run_hours": self.max_run_hours,
            "vcpus": self.shape.vcpus if self.shape else None,
            "memory_gb": self.shape.memory_gb if self.shape else None,
            "disk_gb": self.disk_gb, "disk_type": self.disk_type,
            "external_ip": self.external_ip, "idle_stop": self.idle_stop,
            "running_hours": (self.running_hours(hours_a_day) if hours_a_day is not None
                              else table.HOURS_PER_MONTH),
            "hourly": _money({"on_demand": self.hourly, "spot": self.spot_hourly,
                              "planned": self.planned_hourly}, 6),
            "monthly": _money(monthly, 2),
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class Estimate:
    nodes: list[NodeCost]
    hours_a_day: float | None = None  # --hours-a-day: the use priced beside always-on

    currency = table.CURRENCY
    taken = table.TAKEN
    sources = table.SOURCES
    hours_per_month = table.HOURS_PER_MONTH

    @property
    def hourly(self) -> dict[str, float]:
        """Totals, USD per hour: every node on-demand, every node spot, and as planned."""
        return {"on_demand": sum(n.hourly for n in self.nodes),
                "spot": sum(n.spot_hourly for n in self.nodes),
                "planned": sum(n.planned_hourly for n in self.nodes)}

    @property
    def monthly(self) -> dict[str, float]:
        """Totals a month: on-demand, spot and as planned, all always on; `always_on` (the
        planned figure again) and, with hours_a_day, `use`: as planned at that use."""
        monthly = _monthly(self.hourly)
        monthly["always_on"] = monthly["planned"]
        if self.hours_a_day is not None:
            monthly["use"] = sum(n.monthly_use(self.hours_a_day) for n in self.nodes)
        return monthly

    @property
    def missing(self) -> list[str]:
        """Every price the totals leave out, once each."""
        return sorted({m for n in self.nodes for m in n.missing})

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency, "taken": self.taken, "source": list(self.sources),
            "hours_per_month": self.hours_per_month, "hours_a_day": self.hours_a_day,
            "nodes": [n.to_json(self.hours_a_day) for n in self.nodes],
            "total": {"hourly": _money(self.hourly, 6), "monthly": _money(self.monthly, 2),
                      "complete": not self.missing, "missing": self.missing},
        }


def estimate(farm: Farm, nodes: set[str] | None = None,
             hours_a_day: float | None = None) -> Estimate:
    """The cost of running the farm's nodes (all, or those named, as from --limit), and with
    hours_a_day, of that use too."""
    return Estimate([node_cost(n) for n in farm.selected(nodes)], hours_a_day)


def parse_hours_a_day(text: str | None, check: bool) -> float | None:
    """`--hours-a-day H`: hours of builds a day, more than 0 and at most 24; it prices the
    plan's estimate, so it goes with --check. Bad input is exit 2."""
    if text is None:
        return None
    try:
        hours = float(text)
    except ValueError:
        hours = float("nan")
    if not 0 < hours <= 24:  # NaN fails too
        raise UserError(f"--hours-a-day {text}: not a number of hours in a day. Fix: give the"
                        " hours the farm builds a day, more than 0 and at most 24, like"
                        " --hours-a-day 8.")
    if not check:
        raise UserError(f"--hours-a-day {text} prices the plan's cost estimate, which only"
                        " --check shows. Fix: add --check.")
    return hours


def node_cost(node: Node) -> NodeCost:
    region = region_of(_first_zone(node))
    shape = shape_of(node.machine_type)
    missing: list[str] = []
    machine = machine_spot = None
    rates = table.MACHINE_RATES.get(family_of(node.machine_type), {}).get(region)
    if shape is None or rates is None:
        missing.append(f"no price for {node.machine_type} in {region}")
    else:
        machine = shape.vcpus * rates.vcpu + shape.memory_gb * rates.gb
        machine_spot = shape.vcpus * rates.spot_vcpu + shape.memory_gb * rates.spot_gb
    disk = None
    per_gb_month = table.DISK_RATES.get(node.disk_type, {}).get(region)
    if per_gb_month is None:
        missing.append(f"no price for disk {node.disk_type} in {region}")
    else:
        disk = node.disk_gb * per_gb_month / table.HOURS_PER_MONTH
    return NodeCost(node.name, node.machine_type, region, node.spot, node.max_run_hours,
                    node.disk_gb, node.disk_type, shape, machine, machine_spot, disk,
                    tuple(missing), external_ip=not node.private,
                    idle_stop=node.idle_stop_minutes is not None)


def shape_of(machine_type: str) -> Shape | None:
    """vCPUs and memory of a predefined type: `t2a-standard-4` is 4 vCPUs and 4 x 4 GB.
    None for a name the table cannot read (custom types, -lssd, unknown families)."""
    if machine_type in table.SHARED_CORE:
        return Shape(*table.SHARED_CORE[machine_type])
    match = re.fullmatch(r"([a-z0-9]+)-([a-z]+)-([1-9][0-9]*)", machine_type)
    if not match:
        return None
    family, kind, vcpus = match.group(1), match.group(2), int(match.group(3))
    per_vcpu = table.MEMORY_PER_VCPU.get(family, {}).get(kind)
    return Shape(vcpus, vcpus * per_vcpu) if per_vcpu is not None else None


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _first_zone(node: Node) -> str:
    """The zone archfarm tries first: the first that offers the node's family."""
    offering = zones_offering(node.machine_type)
    return next((z for z in node.zones if offering is None or z in offering), node.zones[0])


def _monthly(hourly: dict[str, float]) -> dict[str, float]:
    return {k: v * table.HOURS_PER_MONTH for k, v in hourly.items()}


def _money(figures: dict[str, float], places: int) -> dict[str, float]:
    return {k: round(v, places) for k, v in figures.items()}
