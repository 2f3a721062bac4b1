"""The built-in DHCP server: codec (packet), decisions (policy, boot), leases, sockets (server)."""
