"""One set of name rules: DHCP and DNS refuse the same host names, and the rules are written once."""
from __future__ import annotations

import pytest

from services.dhcp.hostnames import sanitise
from services.dns.names import sanitise_hostname
from services.names import RESERVED_HOSTNAMES, is_host_label, valid_domain, valid_image_name
from support.source_tree import REPO, source_files


@pytest.mark.parametrize("name", sorted(RESERVED_HOSTNAMES))
def test_dhcp_and_dns_refuse_the_same_reserved_names(name):
    assert sanitise(name.encode()) is None and sanitise_hostname(name, "lab.example") is None


@pytest.mark.parametrize("name, ok", [("node07", True), ("a", True), ("-x", False), ("x-", False),
                                      ("a" * 63, True), ("a" * 64, False), ("UPPER", False), ("a.b", False)])
def test_host_labels_agree_everywhere(name, ok):
    assert is_host_label(name) is ok
    # DHCP and DNS both lower-case a name and keep its first label: they take and refuse the same ones
    assert (sanitise(name.encode()) is None) == (sanitise_hostname(name, "lab.example") is None)


def test_image_names_and_domains():
    assert valid_image_name("web_v1.2+x") and not valid_image_name("../etc") and not valid_image_name("a..b")
    assert not valid_image_name("a/b") and not valid_image_name(7)
    assert valid_domain("cluster.example") and not valid_domain("bad_domain.example")


def test_the_rules_are_written_once():
    """No module but services/names.py spells the host label or image name patterns again."""
    label, image = "[a-z0-9-]{1,63}", "[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
    again = [f for f in source_files("*.py", under=("appliance", "services", "bootimages"))
             if f != "services/names.py" and (label in (text := (REPO / f).read_text()) or image in text)]
    # The golden-client program is stdlib-only and runs on other machines: it keeps its own copy.
    assert again == ["appliance/client/siclient.py"], again
