"""The fake's catalog: real zones, machine types (with architecture) and public image families.

Which families exist, their architecture and the zones offering the Arm ones come from
`provision.gce.catalog`, the one table archfarm's client side uses too (docs/compute-engine.md,
"Machine families and zones"). Added here: shapes, CPU platforms, disk types, images. Everything
here is data; nothing speaks HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..gce import catalog as archfarm

ARM64, X86_64 = "ARM64", "X86_64"
ARCHITECTURE = {archfarm.ARM64: ARM64, archfarm.AMD64: X86_64}  # platform -> GCE's enum

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
ZONE_SET = frozenset(ALL_ZONES)


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


def _family(name: str, cpu_platform: str, disk_types: tuple[str, ...],
            shapes: dict[str, tuple[int, int]]) -> Family:
    """A family with archfarm's architecture and zones for it (all zones when not limited)."""
    known = archfarm.FAMILIES[name]
    zones = tuple(z for z in ALL_ZONES if known.offered_in(z))
    missing = (known.zones or frozenset()) - ZONE_SET
    assert not missing, f"zones of {name} missing from the fake's catalog: {sorted(missing)}"
    return Family(name, ARCHITECTURE[known.platform], cpu_platform, zones, disk_types, shapes)


FAMILIES = [
    _family("e2", "Intel Broadwell", PD,
            {"e2-micro": (2, 1024), "e2-small": (2, 2048), "e2-medium": (2, 4096),
             **_shapes("e2", {"standard": 4, "highcpu": 1, "highmem": 8}, [2, 4, 8, 16, 32])}),
    _family("n2", "Intel Cascade Lake", PD,
            _shapes("n2", {"standard": 4, "highcpu": 1, "highmem": 8},
                    [2, 4, 8, 16, 32, 48, 64, 80, 96, 128])),
    _family("n2d", "AMD Milan", PD,
            _shapes("n2d", {"standard": 4, "highcpu": 1, "highmem": 8},
                    [2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224])),
    _family("c3", "Intel Sapphire Rapids", PD_NO_STANDARD,
            _shapes("c3", {"standard": 4, "highcpu": 2, "highmem": 8}, [4, 8, 22, 44, 88, 176])),
    _family("t2a", "Ampere Altra", PD, _shapes("t2a", {"standard": 4}, [1, 2, 4, 8, 16, 32, 48])),
    _family("c4a", "Google Axion", HYPERDISK,
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
    ("debian-cloud", "debian-13", X86_64, "debian-13-trixie-v{d}",
     "Debian, Debian GNU/Linux, 13 (trixie), amd64 built on {d}"),
    ("debian-cloud", "debian-13-arm64", ARM64, "debian-13-trixie-arm64-v{d}",
     "Debian, Debian GNU/Linux, 13 (trixie), arm64 built on {d}"),
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
