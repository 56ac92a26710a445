"""hypervisor: config drives for libvirt domains.

    devices.py     where a drive goes in a domain's XML (bus, target, controller)
    connection.py  opening libvirt and finding domains, with errors a user can act on
    attach.py      build the image, edit the persistent definition, update a running guest
    policy.py      Nova's required_by: does this domain get a drive at all?
    sync.py        every registered instance's domain, by uuid

Only attach.py, connection.py and sync.py import libvirt, and only when called,
so ``configdrive build`` never pays for it.
"""
from __future__ import annotations

from metadata_content.errors import BadInput, Failure

# One wording for the README, `attach --help` and the error: libvirt-python is
# an extra because it compiles against libvirt's development files.
NEEDS_LIBVIRT_PYTHON = ("needs libvirt-python: apt-get install libvirt-dev pkg-config, then "
                        "bash scripts/setup.sh (in a checkout; it adds the libvirt extra from the "
                        "lock file when libvirt-dev is present) or pip install 'configdrive[libvirt]'")


class HypervisorError(Failure):
    """A refusal with a user-facing ``str()``; raised before anything was changed.
    Exit status 1, or 2 for the subclasses that are also :class:`BadInput`."""


class ConnectError(HypervisorError):
    """No daemon, permission denied, or an unusable URI."""


class DomainNotFound(HypervisorError, BadInput):
    """No domain by that name or UUID."""


class PlacementError(HypervisorError, BadInput):
    """The drive cannot be placed: the target is taken, or the bus is full."""
