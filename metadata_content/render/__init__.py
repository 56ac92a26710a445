"""Instance -> the bytes a guest reads: the one place that renders.

    openstack.py  meta_data.json, vendor_data, the version listings
    ec2.py        the EC2 tree (meta-data, user-data) and its JSON for the drive
    network.py    network_data.json from NICs, bonds and VLANs (Nova's netutils rules)
    versions.py   which version adds which file
    tree.py       MetadataTree: lookup(path) for HTTP, drive_files() for images
"""
