"""Machine families archfarm knows: their platform and, where limited, the zones offering them.

The one source of truth for the client side (inventory checks, zone failover) and for the
fake's catalog. Data only; no Compute Engine import. Zones: docs/compute-engine.md,
"Machine families and zones".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..platforms import AMD64, ARM64

T2A_ZONES = frozenset({
    "us-central1-a", "us-central1-b", "us-central1-f", "europe-west4-a", "europe-west4-b",
    "europe-west4-c", "asia-southeast1-b", "asia-southeast1-c"})
C4A_ZONES = frozenset({
    "us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f", "us-east1-b",
    "us-east1-c", "us-east1-d", "us-east4-a", "us-east4-b", "us-east4-c", "europe-west1-b",
    "europe-west1-c", "europe-west1-d", "europe-west4-a", "europe-west4-b", "europe-west4-c",
    "asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"})


@dataclass(frozen=True)
class Family:
    name: str
    platform: str
    zones: frozenset[str] | None = None  # None: offered in every zone archfarm knows

    def offered_in(self, zone: str) -> bool:
        return self.zones is None or zone in self.zones


FAMILIES = {f.name: f for f in (
    Family("t2a", ARM64, T2A_ZONES),
    Family("c4a", ARM64, C4A_ZONES),
    Family("e2", AMD64),
    Family("n2", AMD64),
    Family("n2d", AMD64),
    Family("c3", AMD64),
)}

# Debian 13 on each platform (public images; the family always names the newest).
DEFAULT_IMAGES = {ARM64: "projects/debian-cloud/global/images/family/debian-13-arm64",
                  AMD64: "projects/debian-cloud/global/images/family/debian-13"}


def family_of(machine_type: str) -> str:
    return machine_type.split("-", 1)[0]


def platform_of(machine_type: str) -> str:
    """arm64 for the Arm families; every other Compute Engine family is x86-64."""
    family = FAMILIES.get(family_of(machine_type))
    return family.platform if family else AMD64


def zones_offering(machine_type: str) -> frozenset[str] | None:
    """The zones offering this type's family, or None when not limited (or not known)."""
    family = FAMILIES.get(family_of(machine_type))
    return family.zones if family else None
