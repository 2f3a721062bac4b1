"""si completion and si manpage: generated from the parser, so every command is in both."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.cli import command_names

REPO = Path(__file__).resolve().parent.parent
SI = [sys.executable, "-m", "appliance.cli"]


def si(*args: str) -> str:
    return subprocess.run([*SI, *args], capture_output=True, text=True, check=True, cwd=REPO).stdout


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last word, through the generated completion function."""
    line = " ".join(words)
    out = subprocess.run(["bash", "-c", f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
                                        f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _shtab_si; '
                                        f'printf "%s\\n" "${{COMPREPLY[@]}}"'],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completes_commands_actions_and_options(tmp_path):
    script = tmp_path / "si.bash"
    script.write_text(si("completion", "bash"))
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert complete(script, "si", "ho") == ["hosts"]
    assert complete(script, "si", "hosts", "re") == ["reinstall"]
    assert complete(script, "si", "hosts", "show", "--j") == ["--json"]
    assert set(command_names()) <= set(complete(script, "si", "''")), "every command is offered"


def test_the_manual_page_has_every_command():
    page = si("manpage")
    assert page.startswith(".TH SI \"1\"")
    for name in command_names():
        assert f"\\fI\\,{name}\\/\\fR" in page, f"si {name} is not in the manual page"
    assert "reinstall" in page and "\\-\\-follow" in page, "subcommands' actions and options too"


def test_manpage_writes_a_file(tmp_path):
    out = tmp_path / "man1" / "si.1"
    assert "wrote" in si("manpage", "--output", str(out))
    assert out.read_text() == si("manpage")
