"""The managed rsync daemon: rsyncd.conf rendering and the supervised child."""
