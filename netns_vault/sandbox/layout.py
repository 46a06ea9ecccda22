"""The closed world's layout: its addresses, interface names and the programs it needs.

    isp  (the internet)                     host (the user's machine; `vault` runs here)
      lo    198.51.100.1/32  WireGuard        eth0  192.0.2.2/24, default via 192.0.2.1
            198.51.100.53/32 DNS (dnsmasq)    eth1  198.18.0.1/24 ----+
            203.0.113.80/32  web (echo)                               |
      up0   192.0.2.1/24 -------------- veth -- eth0                  |  lan (a LAN peer)
      <id>s 100.96.0.1/24 wireguard-go server                         +- eth0 198.18.0.2/24,
                                                                          default via 198.18.0.1

Client i of the WireGuard server has tunnel address 100.96.0.(2+i)/32; `World.write_client_config`
writes its wg-quick file. The echo web server answers `client=ADDR` with the source address it sees.
"""

from __future__ import annotations

import shutil

from ..errors import UsageError

GATEWAY = "192.0.2.1"  # isp side of the host uplink
HOST_ADDR = "192.0.2.2"  # host eth0
UPLINK_PREFIXLEN = 24
ENDPOINT_ADDR = "198.51.100.1"  # WireGuard server endpoint (isp lo)
ENDPOINT_PORT = 51820
DNS_ADDR = "198.51.100.53"  # dnsmasq (isp lo)
WEB_ADDR = "203.0.113.80"  # echo web server (isp lo)
WEB_PORT = 80
WEB_URL = f"http://{WEB_ADDR}/"
TUNNEL_SERVER_ADDR = "100.96.0.1"
TUNNEL_NET = "100.96.0.0/24"
LAN_HOST_ADDR = "198.18.0.1"  # host eth1
LAN_PEER_ADDR = "198.18.0.2"  # lan eth0
LAN_PREFIXLEN = 24
WEB_NAME = "web.demo"  # -> WEB_ADDR
VPN_NAME = "vpn.demo"  # -> ENDPOINT_ADDR
HOST_UPLINK_IFACE = "eth0"
HOST_LAN_IFACE = "eth1"
ISP_UPLINK_IFACE = "up0"
LAN_IFACE = "eth0"
DEFAULT_CLIENTS = 4

WIREGUARD_GO = "wireguard-go"
DNSMASQ = "/usr/sbin/dnsmasq"
TCPDUMP = "tcpdump"
BUSYBOX = "busybox"
CURL = "curl"
NSENTER = "nsenter"
REQUIRED_TOOLS = (WIREGUARD_GO, DNSMASQ, TCPDUMP, BUSYBOX, CURL, NSENTER, "ip")

START_TIMEOUT = 5.0  # each daemon must be ready within this
STOP_TIMEOUT = 3.0


def client_address(index: int) -> str:
    """Tunnel address of client `index` (0-based): 100.96.0.(2+index)."""
    if not 0 <= index <= 252:
        raise UsageError(f"client index {index} out of range")
    return f"100.96.0.{2 + index}"


def missing_tools() -> list[str]:
    """The external programs the world needs that are not installed."""
    return [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
