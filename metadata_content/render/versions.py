"""The metadata API versions guests can ask for, and what each one adds."""
from __future__ import annotations

EC2_VERSIONS: tuple[str, ...] = (
    "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
    "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04",
)

FOLSOM = "2012-08-10"
GRIZZLY = "2013-04-04"      # random_seed, password
HAVANA = "2013-10-17"       # vendor_data.json
LIBERTY = "2015-10-15"      # project_id, network_data.json
NEWTON_ONE = "2016-06-30"   # devices
NEWTON_TWO = "2016-10-06"   # vendor_data2.json
OCATA = "2017-02-22"        # NIC vlan in devices
ROCKY = "2018-08-27"        # NIC vf_trusted in devices
VICTORIA = "2020-10-14"     # dedicated_cpus
EPOXY = "2025-04-04"        # share devices

OPENSTACK_VERSIONS: tuple[str, ...] = (
    FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY, VICTORIA, EPOXY,
)

# Nova writes only these EC2 versions onto a drive (config_drive_skip_versions).
EC2_DRIVE_VERSIONS: tuple[str, ...] = ("2009-04-04", "latest")

LATEST = "latest"


def resolve(version: str, known: tuple[str, ...]) -> str | None:
    """The dated version *version* names (``latest`` = newest), or None if unknown."""
    if version == LATEST:
        return known[-1]
    return version if version in known else None


def at_least(version: str, required: str) -> bool:
    """True when dated *version* includes what *required* introduced (ISO dates sort)."""
    return version >= required
