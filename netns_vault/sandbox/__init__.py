"""The closed world: a fake internet, a fake user machine and a fake LAN, all in namespaces.

Used by the integration tests and by `vault demo`. Its parts: `layout` (addresses, names, tools),
`namespaces` (running programs in a namespace; making and removing them), `network` (links,
addresses, routes), `servers` (WireGuard, DNS, web), `clients` (keys, wg-quick files), `capture`
(tcpdump and pcap), `probes` (HTTP, DNS, ping from inside a namespace), `processes`, and `world`
(`World`, made of those parts). The public names are re-exported here
(`from netns_vault.sandbox import World, Capture, ns_run, ...`); the attack tools are
`netns_vault.sandbox.attacks` and the echo web server `netns_vault.sandbox.web` (both also run
as `python -m` programs inside a namespace, so this package does not import them).
"""

from .capture import Capture, Packet, parse_pcap
from .clients import ClientKeys
from .layout import (
    BUSYBOX,
    CURL,
    DEFAULT_CLIENTS,
    DNS_ADDR,
    DNSMASQ,
    ENDPOINT_ADDR,
    ENDPOINT_PORT,
    GATEWAY,
    HOST_ADDR,
    HOST_LAN_IFACE,
    HOST_UPLINK_IFACE,
    ISP_UPLINK_IFACE,
    LAN_HOST_ADDR,
    LAN_IFACE,
    LAN_PEER_ADDR,
    LAN_PREFIXLEN,
    NSENTER,
    REQUIRED_TOOLS,
    START_TIMEOUT,
    STOP_TIMEOUT,
    TCPDUMP,
    TUNNEL_NET,
    TUNNEL_SERVER_ADDR,
    UPLINK_PREFIXLEN,
    VPN_NAME,
    WEB_ADDR,
    WEB_NAME,
    WEB_PORT,
    WEB_URL,
    WIREGUARD_GO,
    client_address,
    missing_tools,
)
from .namespaces import clean_env, ns_popen, ns_run, nsenter_argv, write_proc_sys
from .probes import ProbeResult, dns_lookup, dns_resolve, http_get, http_probe, ping
from .processes import stop_process
from .world import World

__all__ = [
    "BUSYBOX", "CURL", "DEFAULT_CLIENTS", "DNSMASQ", "DNS_ADDR", "ENDPOINT_ADDR", "ENDPOINT_PORT",
    "GATEWAY", "HOST_ADDR", "HOST_LAN_IFACE", "HOST_UPLINK_IFACE", "ISP_UPLINK_IFACE",
    "LAN_HOST_ADDR", "LAN_IFACE", "LAN_PEER_ADDR", "LAN_PREFIXLEN", "NSENTER", "REQUIRED_TOOLS",
    "START_TIMEOUT", "STOP_TIMEOUT", "TCPDUMP", "TUNNEL_NET", "TUNNEL_SERVER_ADDR",
    "UPLINK_PREFIXLEN", "VPN_NAME", "WEB_ADDR", "WEB_NAME", "WEB_PORT", "WEB_URL", "WIREGUARD_GO",
    "Capture", "ClientKeys", "Packet", "ProbeResult", "World", "clean_env", "client_address",
    "dns_lookup", "dns_resolve", "http_get", "http_probe", "missing_tools", "ns_popen", "ns_run",
    "nsenter_argv", "parse_pcap", "ping", "stop_process", "write_proc_sys",
]
