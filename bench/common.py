"""What every bench script shares: the description of the machine a figure was measured on, and
the one way a result file is written (atomically, through recsys's own JSON writer).

    python -c "import sys; sys.path.insert(0, 'bench'); import common; print(common.machine())"

torch is imported only when `machine()` is called, so `python bench/<script>.py --help` stays fast.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recsys_cli.artifacts.io import write_json as _write_artifact_json  # noqa: E402


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to two decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(threads: int | None = None, **extra) -> dict:
    """Where a figure was measured: platform, Python, CPUs, torch version and threads, load average
    now, and the GPU when there is one. `threads` is the torch thread count the bench chose (default:
    torch's current one); `extra` adds bench-specific fields (e.g. cores_used=1)."""
    try:
        import torch
    except ImportError:  # a bench that does not need torch still describes the machine
        torch = None
    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": threads if threads is not None else (torch.get_num_threads() if torch is not None else None),
        "loadavg": loadavg(),
    }
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info | extra


def write_json(path: Path, obj: dict) -> Path:
    """Write `obj` as indented, sorted JSON atomically (a temporary file beside it, then a rename);
    the parent folder is created. Returns the path."""
    path = Path(path)
    _write_artifact_json(obj, path)
    return path


def write_result(name: str, result: dict) -> Path:
    """bench/results/<name>, atomically."""
    return write_json(RESULTS / name, result)


def prepared_run(data_dir: Path, work: Path, model: str | None, cli, note) -> Path:
    """`work/R`: the P5 split at `data_dir` textualized and its entity pool built, each step
    skipped when its output is there (`cli` runs one `recsys` command, `note` logs a line)."""
    from recsys_cli.artifacts import schemas

    data = work / "R"
    if not (data / schemas.MANIFEST).is_file():
        note(f"textualize {data_dir} -> {data}")
        cli(
            "textualize", "amazon", "--category", "toys", "--data-dir", str(data_dir), "--out", str(data), "--seed", "0"
        )
    if not (data / schemas.ENTITIES).is_file():
        note("build-entities")
        cli("build-entities", "--data", str(data), *(["--model", model] if model else []))
    return data
