"""Module dependency resolution against Debian's real kernel package.

Debian does not ship modules.dep (depmod runs at install); the builder reads
each module's .modinfo instead. Here depmod makes the real modules.dep from the
same tree, and both ways must agree on closure and order.
"""
from __future__ import annotations

import os
import shutil

import pytest

from bootimages.build import DEFAULT_MODULES
from bootimages.modules import ModuleError, ModuleIndex, module_name, parse_modules_dep
from support.bootimage_support import debian_modules  # noqa: F401  (session fixture)


def _check_order(order: list[str], deps: dict[str, list[str]]) -> None:
    position = {rel: i for i, rel in enumerate(order)}
    for rel in order:
        for dep in deps[rel]:
            assert dep in position, f"{rel} needs {dep}, which is missing"
            assert position[dep] < position[rel], f"{dep} must load before {rel}"


def test_modinfo_resolution_matches_depmod(debian_modules, tmp_path):  # noqa: F811
    with_dep = ModuleIndex.scan(debian_modules)
    assert with_dep._deps, "depmod wrote no modules.dep"
    # the same tree without modules.dep: the builder's own path, via .modinfo
    bare = tmp_path / debian_modules.name
    shutil.copytree(debian_modules / "kernel", bare / "kernel", copy_function=os.link)
    shutil.copy(debian_modules / "modules.builtin", bare)
    from_modinfo = ModuleIndex.scan(bare)
    assert from_modinfo._deps is None
    real_dep = parse_modules_dep((debian_modules / "modules.dep").read_text())
    order_a, builtin_a = with_dep.resolve(list(DEFAULT_MODULES))
    order_b, builtin_b = from_modinfo.resolve(list(DEFAULT_MODULES))
    assert set(order_a) == set(order_b) and builtin_a == builtin_b
    _check_order(order_b, real_dep)           # the modinfo order satisfies depmod's graph
    # the closure is complete: every transitive depmod dependency is in it
    assert set(order_b) == set(order_b) | {d for rel in order_b for d in real_dep[rel]}


@pytest.mark.parametrize("name, needs", [
    ("virtio_net", {"virtio", "virtio_ring", "net_failover", "failover"}),
    ("ext4", {"jbd2", "mbcache", "crc16"}),
    ("igb", {"dca", "i2c_algo_bit"}),
    ("nvme", {"nvme_core"}),
    ("sd_mod", {"scsi_mod"}),
])
def test_known_dependencies(debian_modules, name, needs):  # noqa: F811
    index = ModuleIndex.scan(debian_modules)
    order, _ = index.resolve([name])
    names = [module_name(r) for r in order]
    # Debian 13's kernel builds virtio and virtio_ring in: a built-in dependency needs no loading
    assert needs - index.builtin <= set(names) and names[-1] == name, (needs, names)
    assert not set(names) & index.builtin


def test_names_are_dash_underscore_insensitive_and_builtins_reported(debian_modules):  # noqa: F811
    index = ModuleIndex.scan(debian_modules)
    order, builtin = index.resolve(["nls-iso8859-1", "nvme_core", "af_packet"])
    names = [module_name(r) for r in order]
    assert names[0] == "nls_iso8859_1" and names[-1] == "nvme_core"
    assert builtin == ["af_packet"]


def test_unknown_module_is_a_clear_error(debian_modules):  # noqa: F811
    with pytest.raises(ModuleError, match="no_such_driver"):
        ModuleIndex.scan(debian_modules).resolve(["no_such_driver"])


def test_parse_modules_dep_rejects_garbage():
    assert parse_modules_dep("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n") == {"kernel/a.ko": ["kernel/b.ko"],
                                                                             "kernel/b.ko": []}
    with pytest.raises(ModuleError):
        parse_modules_dep("no colon here\n")
