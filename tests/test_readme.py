"""The README's "Use a trained model" commands run as written, on a tiny run standing in for the demo's."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def test_use_a_trained_model_section_runs_as_written(tiny_runs, tiny_root, tmp_path):
    section = _section("Use a trained model")
    swap = {"runs/demo/tg_fixmatch_seed0": str(tiny_runs["tg_fixmatch"]), "data/demo": str(tiny_root)}

    def adapted(code: str) -> str:
        for old, new in swap.items():
            code = code.replace(old, new)
        return code

    bin_dir = Path(sys.executable).parent
    for block in _blocks(section, "bash"):
        for command in adapted(block).replace("\\\n", " ").splitlines():
            command = command.split("#")[0].strip()
            if command:
                argv = shlex.split(command)
                proc = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True, text=True)
                assert proc.returncode == 0, (command, proc.stderr[-2000:])
    assert (tmp_path / "predictions.json").exists()
    (python,) = _blocks(section, "python")
    proc = subprocess.run([sys.executable, "-c", adapted(python)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    label, top1 = proc.stdout.splitlines()[0].split()[0], float(proc.stdout.splitlines()[1])
    assert label in (tiny_root / "classInd.txt").read_text() and 0 <= top1 <= 100
