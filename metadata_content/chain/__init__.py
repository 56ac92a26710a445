"""Operating the Neutron-like chain: 169.254.169.254 -> haproxy (in a network
namespace) -> the agent's UNIX socket -> the API.

    haproxy.py    the per-network or per-router configuration, and its process
    netns.py      namespaces, veth pairs, addresses, routes, router rules
    dnsmasq.py    static leases and the DHCP options (121/249) carrying the metadata route
    lab.py        a whole chain on one machine, with guests in namespaces
    labstate.py   what a lab is made of, in its state file (lab.json)
    doctor.py     walks the chain hop by hop and names the first broken one
    processes.py  every process started here is recorded and stopped by pid

The HTTP services themselves (API, agent) are in :mod:`metadata_content.server`.
"""
