"""The benchmark scripts run as modules from the repository root (`python -m benchmarks.NAME`,
`python -m benchmarks.research.NAME`) with no sys.path manipulation, and every one answers --help."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py") if p.name not in ("__init__.py", "common.py"))
MODULES = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in SCRIPTS]


def test_the_layout():
    assert (BENCHMARKS / "__init__.py").is_file() and (BENCHMARKS / "research" / "__init__.py").is_file()
    product = {m for m in MODULES if m.count(".") == 1}
    assert {"benchmarks.speed", "benchmarks.change_map_memory", "benchmarks.paired", "benchmarks.di_toy",
            "benchmarks.baselines_toy"} <= product
    assert not list(BENCHMARKS.glob("*.md")), "results live in docs/results.md"


def test_no_path_hacks():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted(BENCHMARKS.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if "sys.path" in line or "noqa: E402" in line or "python benchmarks/" in line]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module", MODULES)
def test_help(module, monkeypatch, capsys):
    """Imported as `python -m` imports it, each script's main() prints its usage and exits 0 on --help
    (main() runs only under `if __name__ == "__main__"`, so importing does no work)."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    assert 'if __name__ == "__main__":\n    main()' in path.read_text()
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    script = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        script.main()
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["benchmarks.baselines_toy", "benchmarks.research.di_balance"])
def test_python_m_from_the_root(module):
    """The real thing, for a product script using benchmarks.common and a research script importing a
    sibling: `python -m … --help` from the repository root, nothing added to PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
