"""Engines for installing many machines at once: the image as one stream (tar + zstd),
a BitTorrent swarm (opentracker and aria2c) and udpcast multicast sessions.

Nothing here knows the appliance: each module builds the command lines of a
Debian engine and reads what it prints; appliance/fleet runs them.
"""
