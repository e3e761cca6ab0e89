"""The fake's catalog: real zones, machine types (with architecture) and public image families.

Zone availability follows the public catalog (T2A only where it exists: see
shared/reference/gce-facts.md §6). Everything here is data; nothing speaks HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ARM64, X86_64 = "ARM64", "X86_64"

ZONES: dict[str, list[str]] = {
    "us-central1": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
    "us-east1": ["us-east1-b", "us-east1-c", "us-east1-d"],
    "us-east4": ["us-east4-a", "us-east4-b", "us-east4-c"],
    "us-west1": ["us-west1-a", "us-west1-b", "us-west1-c"],
    "europe-west1": ["europe-west1-b", "europe-west1-c", "europe-west1-d"],
    "europe-west4": ["europe-west4-a", "europe-west4-b", "europe-west4-c"],
    "asia-southeast1": ["asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"],
}
ALL_ZONES = [z for zones in ZONES.values() for z in zones]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


PD = ("pd-standard", "pd-balanced", "pd-ssd")
PD_NO_STANDARD = ("pd-balanced", "pd-ssd", "hyperdisk-balanced")
HYPERDISK = ("hyperdisk-balanced", "hyperdisk-extreme", "hyperdisk-throughput")


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str
    cpu_platform: str
    zones: tuple[str, ...]
    disk_types: tuple[str, ...]
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # type -> (vCPUs, MB)


def _shapes(prefix: str, gb_per_cpu: dict[str, float], sizes: list[int]) -> dict:
    return {f"{prefix}-{kind}-{n}": (n, int(n * gb * 1024))
            for kind, gb in gb_per_cpu.items() for n in sizes}


T2A_ZONES = ("us-central1-a", "us-central1-b", "us-central1-f", "europe-west4-a",
             "europe-west4-b", "europe-west4-c", "asia-southeast1-b", "asia-southeast1-c")
C4A_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f", "us-east1-b",
             "us-east1-c", "us-east1-d", "us-east4-a", "us-east4-b", "us-east4-c",
             "europe-west1-b", "europe-west1-c", "europe-west1-d", "europe-west4-a",
             "europe-west4-b", "europe-west4-c", "asia-southeast1-a", "asia-southeast1-b",
             "asia-southeast1-c")
C3_ZONES = tuple(z for z in ALL_ZONES if not z.startswith("us-west1"))

FAMILIES = [
    Family("e2", X86_64, "Intel Broadwell", tuple(ALL_ZONES), PD,
           {"e2-micro": (2, 1024), "e2-small": (2, 2048), "e2-medium": (2, 4096),
            **_shapes("e2", {"standard": 4, "highcpu": 1, "highmem": 8}, [2, 4, 8, 16, 32])}),
    Family("n2", X86_64, "Intel Cascade Lake", tuple(ALL_ZONES), PD,
           _shapes("n2", {"standard": 4, "highcpu": 1, "highmem": 8},
                   [2, 4, 8, 16, 32, 48, 64, 80, 96, 128])),
    Family("c3", X86_64, "Intel Sapphire Rapids", C3_ZONES, PD_NO_STANDARD,
           _shapes("c3", {"standard": 4, "highcpu": 2, "highmem": 8}, [4, 8, 22, 44, 88, 176])),
    Family("t2a", ARM64, "Ampere Altra", T2A_ZONES, PD,
           _shapes("t2a", {"standard": 4}, [1, 2, 4, 8, 16, 32, 48])),
    Family("c4a", ARM64, "Google Axion", C4A_ZONES, HYPERDISK,
           _shapes("c4a", {"standard": 4, "highcpu": 2, "highmem": 8},
                   [1, 2, 4, 8, 16, 32, 48, 64, 72])),
]
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


@dataclass(frozen=True)
class MachineType:
    name: str
    family: Family
    cpus: int
    memory_mb: int

    @property
    def architecture(self) -> str:
        return self.family.architecture


MACHINE_TYPES = {name: MachineType(name, fam, cpus, mb)
                 for fam in FAMILIES for name, (cpus, mb) in fam.shapes.items()}


def family_of(machine_type: str) -> str:
    return machine_type.split("-", 1)[0]


def machine_type(name: str, zone: str) -> MachineType | None:
    """The machine type `name` as offered in `zone`, or None."""
    mt = MACHINE_TYPES.get(name)
    return mt if mt and zone in mt.family.zones else None


def machine_types_in(zone: str) -> list[MachineType]:
    return [mt for mt in MACHINE_TYPES.values() if zone in mt.family.zones]


@dataclass(frozen=True)
class Image:
    project: str
    name: str
    family: str
    architecture: str
    description: str
    disk_size_gb: int = 10
    deprecated: bool = False


# (project, family, architecture, name pattern, description pattern)
IMAGE_FAMILIES = [
    ("debian-cloud", "debian-12", X86_64, "debian-12-bookworm-v{d}",
     "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on {d}"),
    ("debian-cloud", "debian-12-arm64", ARM64, "debian-12-bookworm-arm64-v{d}",
     "Debian, Debian GNU/Linux, 12 (bookworm), arm64 built on {d}"),
    ("ubuntu-os-cloud", "ubuntu-2204-lts", X86_64, "ubuntu-2204-jammy-v{d}",
     "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image built on {d}"),
    ("ubuntu-os-cloud", "ubuntu-2204-lts-arm64", ARM64, "ubuntu-2204-jammy-arm64-v{d}",
     "Canonical, Ubuntu, 22.04 LTS, arm64 jammy image built on {d}"),
    ("ubuntu-os-cloud", "ubuntu-2404-lts-amd64", X86_64, "ubuntu-2404-noble-amd64-v{d}",
     "Canonical, Ubuntu, 24.04 LTS, amd64 noble image built on {d}"),
    ("ubuntu-os-cloud", "ubuntu-2404-lts-arm64", ARM64, "ubuntu-2404-noble-arm64-v{d}",
     "Canonical, Ubuntu, 24.04 LTS, arm64 noble image built on {d}"),
]

# Each family has an older, deprecated image and a current one, so getFromFamily must choose.
IMAGES = [Image(project, name.format(d=date), family, arch, text.format(d=date),
                deprecated=(date == "20251014"))
          for project, family, arch, name, text in IMAGE_FAMILIES
          for date in ("20251014", "20251111")]


def image(project: str, name: str) -> Image | None:
    return next((i for i in IMAGES if i.project == project and i.name == name), None)


def image_from_family(project: str, family: str) -> Image | None:
    """The newest non-deprecated image of a family, as getFromFamily returns it."""
    live = [i for i in IMAGES if i.project == project and i.family == family and not i.deprecated]
    return max(live, key=lambda i: i.name, default=None)
