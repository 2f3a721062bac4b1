"""Every program the code runs is in services/debian_packages.PROGRAMS, and setup.sh installs its package.

A forgotten package then fails here on any machine, not only on a fresh one
(a machine with packages from earlier work hides it otherwise).
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from services.debian_packages import PROGRAMS, package_file
from support.source_tree import source_files

REPO = Path(__file__).resolve().parent.parent
# Calls that run (or look up) a program named by their first argument.
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec", "run_checked",
           "_run", "which", "program_path", "require"}
# Code the appliance itself runs; the rest (the lab, tests, benchmarks) may use the lab profile.
APPLIANCE_CODE = ("appliance/", "services/", "bootimages/")


def _str(node: ast.AST) -> str | None:
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        node = node.elts[0]
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def invoked_programs() -> dict[str, set[str]]:
    """{program: files that run it}, read from the source: subprocess calls with a literal argv[0]."""
    found: dict[str, set[str]] = {}
    for rel in source_files("*.py"):
        for node in ast.walk(ast.parse((REPO / rel).read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value if isinstance(func, ast.Attribute) else None
            owner_name = (owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")) or ""
            programs = []
            if owner_name.endswith("lab") and name in ("run", "popen") and len(node.args) > 1:
                programs = [_str(node.args[1])]            # lab.run(namespace, program, ...)
            elif name in ("which", "program_path", "require"):
                programs = [_str(a) for a in node.args if isinstance(a, ast.Constant)]
            elif name in RUNNERS:
                programs = [_str(node.args[0])]
            for program in filter(None, programs):
                if program.startswith(("-", "+")) or " " in program:
                    continue
                found.setdefault(Path(program).name, set()).add(rel)
    return found


def setup_packages(profile: str) -> set[str]:
    out = subprocess.run(["bash", str(REPO / "setup.sh"), "--print-packages", profile], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def in_every_minbase(package: str) -> bool:
    """Essential or required packages: debootstrap's minbase always has them."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}", package],
                         capture_output=True, text=True).stdout.split()
    return "yes" in out or "required" in out


def test_every_program_the_code_runs_is_listed():
    found = invoked_programs()
    assert {"rsync", "sfdisk", "qemu-system-x86_64", "grub-mkrescue", "ip"} <= set(found), sorted(found)
    unlisted = {p: sorted(files) for p, files in found.items() if p not in PROGRAMS}
    assert not unlisted, f"add these to services/debian_packages.PROGRAMS with their package: {unlisted}"


def test_setup_installs_the_package_of_every_program():
    appliance, lab = setup_packages("appliance"), setup_packages("lab")
    found = invoked_programs()
    for program, package in sorted(PROGRAMS.items()):
        if in_every_minbase(package):
            continue
        by_appliance = any(f.startswith(APPLIANCE_CODE) and not f.startswith("appliance/lab/")
                           for f in found.get(program, ()))
        profile = appliance if by_appliance else lab
        users = ", ".join(sorted(found.get(program, ()))) or "the code (listed in PROGRAMS)"
        assert package in profile, (f"{program} ({package}) is run by {users}, but setup.sh's "
                                    f"{'appliance' if by_appliance else 'lab'} profile does not install {package}")


def _owners(path: str) -> set[str]:
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
    return {pkg.strip().split(":")[0] for line in out.splitlines() if ": " in line and not line.startswith("diversion")
            for pkg in line.split(": ", 1)[0].split(",")}


def _aliases(path: str) -> list[str]:
    """The path and its merged-/usr twin (dpkg may have recorded either)."""
    for short, full in (("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/"), ("/lib/", "/usr/lib/")):
        if path.startswith(full):
            return [path, short + path[len(full):]]
        if path.startswith(short):
            return [path, full + path[len(short):]]
    return [path]


def _depends(package: str, depth: int) -> set[str]:
    """Installed packages that `package` depends on, to `depth` levels."""
    found: set[str] = set()
    level = {package}
    for _ in range(depth):
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Depends},${Pre-Depends}\n", *level],
                             capture_output=True, text=True).stdout
        names = {clause.split("|")[0].split()[0].split(":")[0] for clause in out.replace("\n", ",").split(",")
                 if clause.strip()}
        level = names - found
        found |= names
    return found


def test_each_program_comes_from_its_listed_package_here():
    """On this machine (after ./setup.sh), each program exists and dpkg says the listed package owns it."""
    wrong = {}
    for program, package in sorted(PROGRAMS.items()):
        path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin:/bin")
        assert path, f"{program} not found: ./setup.sh should have installed {package}"
        owners = set()
        for candidate in (*_aliases(path), *_aliases(os.path.realpath(path))):
            owners |= _owners(candidate)
        # an alternative (cc -> gcc-14 -> gcc-14-x86-64-linux-gnu) belongs to a package the listed one pulls in
        if package not in owners and not owners & _depends(package, depth=3):
            wrong[program] = (package, sorted(owners))
    assert not wrong, f"program: (listed package, dpkg's owners): {wrong}"


@pytest.mark.parametrize("package, names", [("ovmf", ("OVMF_CODE_4M.fd",)), ("ipxe-qemu", ("efi-virtio.rom",)),
                                            ("ipxe", ("ipxe.lkrn",))])
def test_firmware_is_found_through_its_package(package, names):
    path = package_file(package, *names)
    assert path.is_file() and path.name == names[0]


def test_a_file_of_a_missing_package_names_the_package():
    with pytest.raises(RuntimeError, match="the Debian package no-such-package is not installed: install"):
        package_file("no-such-package", "x.bin")
