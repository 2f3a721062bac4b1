"""What the tests share: labs, real-client drivers, servers they run as scripts, and checks.

Tests import these as `support.<module>` (pytest puts tests/ on sys.path); the
scripts here that a test runs by path (dhcp_client.py, ra_client.py,
bootimage_httpd.py, bootcfg_http_server.py) import only the project's packages.
"""
