"""Compute Engine list prices for the cost estimate of `--check`: data only, read by costs.py.

Every figure is USD, on-demand or spot, before taxes, sustained-use or committed-use discounts
and free tiers. Machines: per vCPU-hour and per GB-hour of memory (1 GB = 2^30 bytes, as Google
bills it). Boot disks: per GB-month. External IPv4 addresses: per hour in use. To refresh the
table, take the same figures from a newer source and change TAKEN.
"""

from __future__ import annotations

from typing import NamedTuple

CURRENCY = "USD"
HOURS_PER_MONTH = 730  # Google's own convention for a month of VM time
TAKEN = "2026-07-30"   # the date of the price list the figures come from

SOURCES = (
    # Google's published prices, the authority for every figure below:
    "https://cloud.google.com/compute/vm-instance-pricing",
    "https://cloud.google.com/compute/disks-image-pricing",
    # The copy the figures were read from: Google's Cloud Billing Catalog API prices, per
    # machine type and region, generated on 2026-07-30 (pricing.yml at commit fd66b26):
    "https://github.com/Cyclenerd/google-cloud-pricing-cost-calculator/blob/fd66b26/pricing.yml",
    # External IP addresses (EXTERNAL_IPV4_* below):
    "https://cloud.google.com/vpc/network-pricing#ipaddress",
)

NOTES = (
    "Per-vCPU and per-GB rates were solved from two machine types of each family in the source"
    " (<family>-standard-4 and <family>-highcpu-4), then checked: they reproduce the source's"
    " price of every standard, highcpu and highmem type of that family in these regions, spot"
    " included, to the last digit.",
    "N2 in us-central1 ($0.031611 per vCPU-hour, $0.004237 per GB-hour) also matches the SKU"
    " prices quoted in public code that reads the Cloud Billing Catalog API.",
    "T2A is sold only with 4 GB per vCPU, so the source's prices cannot be split between vCPU and"
    " memory: the T2A vCPU rate here is the price of one vCPU with its 4 GB, and memory is 0."
    " Machine totals are exact; Google's own split for T2A was not confirmed.",
    "No figure was compared with Google's pages themselves: the stored copies of them that were"
    " searched showed no price figures.",
    "Spot prices change over time; these are the spot prices of the date taken.",
    "A spot VM's boot disk costs the same as an on-demand VM's.",
    "External IPv4 addresses: Compute Engine bills an address per hour while it is in use, that"
    " is while its VM runs (a stopped VM's ephemeral address is released and not billed); the"
    " rate is global. The figures are the Cloud Billing Catalog SKUs 'External IP Charge on a"
    " Standard VM' (C054-7F72-A02E, $0.005 an hour) and 'External IP Charge on a Spot"
    " Preemptible VM' (4AF8-7C1F-39C4, $0.0025 an hour), as quoted by public code that reads"
    " the catalog (infracost's google_compute_address and others); the standard rate is also"
    " the one on Google's VPC pricing page (the last of SOURCES above, network-pricing#ipaddress)."
    " The SKU's free tier is left out, as every free tier is.",
    "Not covered: Hyperdisk (C4A boots only from Hyperdisk, which also bills IOPS and throughput),"
    " custom and -lssd machine types, network egress, OS licences.",
)

# An external IPv4 address in use by a VM (while the VM runs), USD per hour, any region.
EXTERNAL_IPV4_HOURLY = 0.005
EXTERNAL_IPV4_SPOT_HOURLY = 0.0025  # the address of a Spot (preemptible) VM


class Rates(NamedTuple):
    """USD per hour, for one machine family in one region."""
    vcpu: float
    gb: float
    spot_vcpu: float
    spot_gb: float


# GB of memory per vCPU in the standard names <family>-<kind>-<vCPUs>, e.g. n2-highcpu-8.
MEMORY_PER_VCPU: dict[str, dict[str, float]] = {
    "t2a": {"standard": 4},
    "c4a": {"standard": 4, "highcpu": 2, "highmem": 8},
    "e2": {"standard": 4, "highcpu": 1, "highmem": 8},
    "n2": {"standard": 4, "highcpu": 1, "highmem": 8},
    "n2d": {"standard": 4, "highcpu": 1, "highmem": 8},
    "c3": {"standard": 4, "highcpu": 2, "highmem": 8},
}

# Shared-core E2 types: (vCPUs billed, GB). Each has 2 vCPUs but is billed for a fraction.
SHARED_CORE: dict[str, tuple[float, float]] = {
    "e2-micro": (0.25, 1), "e2-small": (0.5, 2), "e2-medium": (1, 4)}

# family -> region -> Rates(vCPU, GB, spot vCPU, spot GB), USD per hour. The regions are those
# of every zone archfarm knows (provision/gce/catalog.py and the fake's catalog). T2A has no
# price in us-east4 and europe-west1 because it is not sold there.
MACHINE_RATES: dict[str, dict[str, Rates]] = {
    "t2a": {  # vCPU rate includes the vCPU's 4 GB; see NOTES
        "us-central1": Rates(0.0385, 0.0, 0.016392, 0.0),
        "us-east1": Rates(0.0385, 0.0, 0.016392, 0.0),
        "us-west1": Rates(0.0385, 0.0, 0.016392, 0.0),
        "europe-west4": Rates(0.04044409, 0.0, 0.024148, 0.0),
        "asia-southeast1": Rates(0.04748, 0.0, 0.013476, 0.0),
    },
    "c4a": {
        "us-central1": Rates(0.03086, 0.00351, 0.01334, 0.001517),
        "us-east1": Rates(0.03086, 0.00351, 0.01334, 0.001517),
        "us-east4": Rates(0.03086, 0.00351, 0.01784, 0.002029),
        "us-west1": Rates(0.03086, 0.00351, 0.01334, 0.001517),
        "europe-west1": Rates(0.03397995, 0.00386486, 0.0122, 0.001388),
        "europe-west4": Rates(0.0324, 0.003686, 0.00511, 0.000581),
        "asia-southeast1": Rates(0.03807198, 0.00433029, 0.01986, 0.002259),
    },
    "e2": {
        "us-central1": Rates(0.02181159, 0.00292353, 0.01309, 0.001754),
        "us-east1": Rates(0.02181159, 0.00292353, 0.01309, 0.001754),
        "us-east4": Rates(0.02456745, 0.00329199, 0.01347, 0.001805),
        "us-west1": Rates(0.02181159, 0.00292353, 0.01309, 0.001754),
        "europe-west1": Rates(0.02399337, 0.00321609, 0.01162, 0.001558),
        "europe-west4": Rates(0.02401338, 0.00321816, 0.01148, 0.001538),
        "asia-southeast1": Rates(0.02690931, 0.00360594, 0.01405, 0.001883),
    },
    "n2": {
        "us-central1": Rates(0.031611, 0.004237, 0.01499, 0.00201),
        "us-east1": Rates(0.031611, 0.004237, 0.01499, 0.00201),
        "us-east4": Rates(0.035605, 0.004771, 0.00815, 0.001092),
        "us-west1": Rates(0.031611, 0.004237, 0.01499, 0.00201),
        "europe-west1": Rates(0.034773, 0.004661, 0.00763, 0.001023),
        "europe-west4": Rates(0.034802, 0.004664, 0.01265, 0.001696),
        "asia-southeast1": Rates(0.038999, 0.005226, 0.01519, 0.002035),
    },
    "n2d": {
        "us-central1": Rates(0.027502, 0.003686, 0.00796, 0.001067),
        "us-east1": Rates(0.027502, 0.003686, 0.00796, 0.001067),
        "us-east4": Rates(0.030976, 0.004151, 0.01579, 0.002116),
        "us-west1": Rates(0.027502, 0.003686, 0.00796, 0.001067),
        "europe-west1": Rates(0.030253, 0.004055, 0.01313, 0.00176),
        "europe-west4": Rates(0.030278, 0.004058, 0.0106, 0.00142),
        "asia-southeast1": Rates(0.033929, 0.004547, 0.00696, 0.000933),
    },
    "c3": {
        "us-central1": Rates(0.03465, 0.003938, 0.00849, 0.000965),
        "us-east1": Rates(0.03465, 0.003938, 0.00849, 0.000965),
        "us-east4": Rates(0.03465, 0.003938, 0.00984, 0.001118),
        "us-west1": Rates(0.03465, 0.003938, 0.00849, 0.000965),
        "europe-west1": Rates(0.03815312, 0.00433613, 0.01457, 0.001656),
        "europe-west4": Rates(0.0363825, 0.0041349, 0.01536, 0.001746),
        "asia-southeast1": Rates(0.04274771, 0.00485831, 0.02011, 0.002286),
    },
}

# Zonal Persistent Disk: disk type -> region -> USD per GB-month.
DISK_RATES: dict[str, dict[str, float]] = {
    "pd-standard": {"us-central1": 0.04, "us-east1": 0.04, "us-east4": 0.044, "us-west1": 0.04,
                    "europe-west1": 0.04, "europe-west4": 0.044, "asia-southeast1": 0.044},
    "pd-balanced": {"us-central1": 0.10, "us-east1": 0.10, "us-east4": 0.11, "us-west1": 0.10,
                    "europe-west1": 0.10, "europe-west4": 0.11, "asia-southeast1": 0.11},
    "pd-ssd": {"us-central1": 0.17, "us-east1": 0.17, "us-east4": 0.187, "us-west1": 0.17,
               "europe-west1": 0.17, "europe-west4": 0.187, "asia-southeast1": 0.187},
}
