"""Drive files -> image files, and any drive back to files.

    formats.py      the formats, their suffixes and limits (no writer imported)
    build.py        spec -> drive files -> image, atomically; SOURCE_DATE_EPOCH
    iso.py          ISO 9660 names and layout; iso9660.py writes plain trees
                    directly, iso_pycdlib.py any other tree through pycdlib
    vfat.py         FAT12/16/32 images (pyfatfs's structures, our geometry)
    atomic.py       O_TMPFILE output linked into place only when complete
    inspect.py      reads and validates any config drive (ours, Nova's, others')
"""
