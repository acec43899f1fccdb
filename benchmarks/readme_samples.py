"""The README's sample outputs: every ```text block that starts with ``$ bin/shardsim …`` is that command's output
as a pipe prints it (160 columns), whole or with ``...`` where lines are left out.

    python benchmarks/readme_samples.py check    # exit 1 naming each block that no longer matches its command
    python benchmarks/readme_samples.py record   # rewrite every block from a fresh run (the lines kept: a short
                                                 # output whole; a long one its head, '...', and its verdict tail)

``tests/cli/test_readme_samples.py`` runs ``check``: a README that shows output the command no longer prints fails.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"```text\n(\$ bin/shardsim [^\n]*)\n(.*?)```", re.S)
HEAD_LINES, TAIL_LINES, WHOLE_UP_TO = 8, 3, 16
ELIDED = "..."


def run(command: str) -> list[str]:
    """The command's stdout lines (rstripped), run with this interpreter's shardsim."""
    argv = shlex.split(command.removeprefix("$ "))
    exe = Path(sys.executable).parent / "shardsim"
    out = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, timeout=300, cwd=ROOT).stdout
    return [line.rstrip() for line in out.splitlines()]


def matches(shown: list[str], output: list[str]) -> str | None:
    """None when every shown line is an output line, in order, with '...' standing for any lines left out (and
    nothing left out elsewhere); else the first shown line that no placement matches."""
    def fit(i: int, at: int) -> int:
        """How many shown lines from i on match output from ``at`` on (the best placement of each '...')."""
        if i == len(shown):
            return i if at == len(output) else i - 1
        if shown[i].strip() == ELIDED:
            return max(fit(i + 1, start) for start in range(at, len(output) + 1))
        if at < len(output) and output[at] == shown[i]:
            return fit(i + 1, at + 1)
        return i - 1

    reached = fit(0, 0)
    if reached == len(shown):
        return None
    return shown[reached + 1] if reached + 1 < len(shown) else "(the output goes on past the sample)"


def sample(output: list[str]) -> list[str]:
    """What ``record`` keeps of an output."""
    if len(output) <= WHOLE_UP_TO:
        return output
    return output[:HEAD_LINES] + [ELIDED] + output[-TAIL_LINES:]


def main(mode: str) -> int:
    text = README.read_text()
    bad = []

    def redo(m: re.Match) -> str:
        command, body = m.group(1), m.group(2)
        output = run(command)
        if mode == "record":
            return "```text\n" + command + "\n" + "\n".join(sample(output)) + "\n```"
        problem = matches([line.rstrip() for line in body.rstrip("\n").splitlines()], output)
        if problem is not None:
            bad.append(f"{command}: {problem[:120]}")
        return m.group(0)

    new = BLOCK.sub(redo, text)
    if mode == "record":
        README.write_text(new)
        print(f"recorded {len(BLOCK.findall(text))} samples")
        return 0
    for line in bad:
        print("differs:", line)
    print(f"{len(BLOCK.findall(text)) - len(bad)} of {len(BLOCK.findall(text))} README samples match their command")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "check"))
