"""The manual's dialogues: SystemImager's questions, answered at a terminal or from a pipe.

Answers are read a line at a time from standard input whether it is a terminal or not, so
`printf 'y\\n3\\ny\\nn\\n' | si getimage ...` answers as a user at the keyboard would. An empty
answer takes the default in brackets. When the input ends before a question is answered the
command stops with one line naming the option that would have answered it (nothing is guessed).
A wrong answer is asked again at a terminal; from a pipe it stops the command, since the next
lines were meant for the next questions. Questions go to stderr, so stdout stays the result.
"""
from __future__ import annotations

import sys

from ._common import CliError


class Dialogue:
    def __init__(self, stream=None, out=None) -> None:
        self.stream = stream or sys.stdin
        self.out = out or sys.stderr

    @property
    def at_terminal(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _read(self, prompt: str, option: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.stream.readline()
        if not line:
            self.out.write("\n")
            raise CliError(f"{option or 'answer'}: no answer to {prompt.strip()!r} (standard input ended; "
                           f"give it as an option, or --yes)")
        if not self.at_terminal:
            self.out.write(line if line.endswith("\n") else line + "\n")     # a transcript reads whole
        return line.strip()

    def ask(self, question: str, default: str = "", option: str = "", check=None) -> str:
        """question [default]: an answer, checked by check(answer) -> error text or None."""
        while True:
            answer = self._read(f"{question} [{default}]: ", option) or default
            problem = check(answer) if check else None
            if problem is None:
                return answer
            if not self.at_terminal:
                raise CliError(f"{option or 'answer'}: {problem}")
            self.say(problem)

    def yes(self, question: str, default: bool, option: str = "") -> bool:
        """question ([y]/n): or (y/[n]): as the manual writes them; y, yes, n or no."""
        prompt = f"{question} ({'[y]/n' if default else 'y/[n]'}): "
        while True:
            answer = self._read(prompt, option).lower()
            if answer in ("", "y", "yes", "n", "no"):
                return default if answer == "" else answer.startswith("y")
            if not self.at_terminal:
                raise CliError(f"{option or 'answer'}: {answer!r} is not an answer to {question!r} (y or n)")
            self.say("Please answer y or n.")

    def menu(self, question: str, choices: list[tuple[str, str]], default: str, option: str = "") -> str:
        """The manual's numbered list ("1) static_dhcp -- ..."), answered by number or by name."""
        for number, (name, text) in enumerate(choices, 1):
            self.say(f"{number}) {name} -- {text}")
        self.say()
        names = [name for name, _ in choices]
        number = str(names.index(default) + 1)

        def check(answer: str):
            if answer in names or (answer.isdigit() and 1 <= int(answer) <= len(names)):
                return None
            return f"{answer!r} is not one of 1-{len(names)} or {', '.join(names)}"
        answer = self.ask(question, number, option, check)
        return answer if answer in names else names[int(answer) - 1]

    def pause(self) -> None:
        """The manual's "Press <Enter> to continue...": at a terminal only (a pipe has no Enter to give)."""
        if self.at_terminal:
            self._read("Press <Enter> to continue...", "")
