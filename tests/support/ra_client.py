"""Send one IPv6 router solicitation on eth0 with scapy and print the advertisement that answers (JSON)."""
import json
import sys

from scapy.all import ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, IPv6, conf, sr1

conf.verb = 0
answer = sr1(IPv6(dst="ff02::2", hlim=255) / ICMPv6ND_RS(), iface="eth0", timeout=float(sys.argv[1]),
             multi=False)
if answer is None or ICMPv6ND_RA not in answer:
    print(json.dumps(None))
    sys.exit(0)
ra = answer[ICMPv6ND_RA]
print(json.dumps({"hlim": answer[IPv6].hlim, "src": answer[IPv6].src, "routerlifetime": ra.routerlifetime,
                  "M": ra.M, "O": ra.O, "prefixes": int(ICMPv6NDOptPrefixInfo in answer),
                  "lladdr": answer[ICMPv6NDOptSrcLLAddr].lladdr if ICMPv6NDOptSrcLLAddr in answer else None}))
