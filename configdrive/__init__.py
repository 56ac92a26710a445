"""configdrive: config-drive images (ISO9660, VFAT) and the command line.

The content of every image comes from :mod:`metadata_content`; this package
only packs files into filesystems and drives them from the CLI.
"""
