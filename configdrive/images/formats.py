"""What the image writers share without importing each other: the formats,
their file suffixes, and the limits a build checks before picking a writer
(so an ISO build never imports pyfatfs)."""
from __future__ import annotations

FORMATS = {"iso9660": ".iso", "vfat": ".img"}
# Other names users type for them (--format iso): each means exactly one format.
ALIASES = {"iso": "iso9660", "iso-9660": "iso9660", "fat": "vfat"}
DEFAULT_VFAT_SIZE = 64 * 1024 * 1024
# The latest date both formats can record: ISO 9660 directory records store
# the year as 1900 + one byte (2155); FAT clamps its dates to 2107 itself.
MAX_EPOCH = 5869583999  # 2155-12-31T23:59:59Z
