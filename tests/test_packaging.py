"""`pip install .` gives a working si: every file the code reads at run time is in the wheel."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from support.source_tree import source_files

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("appliance", "services", "bootimages")


def test_the_wheel_holds_every_tracked_file_of_the_packages(tmp_path):
    tracked = source_files("*", under=PACKAGES)
    assert "bootimages/initrd/udhcpc.script" in tracked and "services/tftp/lockstep.c" in tracked
    # --no-build-isolation: setuptools comes from the test extras, so no download is needed
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    inside = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in tracked if f not in inside]
    assert not missing, f"pip install . would leave out: {missing}"
