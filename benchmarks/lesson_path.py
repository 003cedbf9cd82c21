#!/usr/bin/env python
"""How far the lesson is from the main job: the call path from ``experiments/dropout_mlp.py``'s ``main`` to the
line that takes the gradient of the training objective.

Runs the main job in-process at a tiny size (``--dataset digits --epochs 1 --train-size 256``, into a temporary
folder) with ``jax.grad`` and ``jax.value_and_grad`` wrapped: the first time the engine asks for a gradient (while
the epoch is traced), the Python stack is recorded. Printed: every frame of this repository on that stack (file,
function, line), the call depth (those frames from ``main`` down to the gradient call) and the distinct files.

    python benchmarks/lesson_path.py          # from the repository root (any checkout layout)
"""
from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    import jax

    seen = []
    originals = {name: getattr(jax, name) for name in ("grad", "value_and_grad")}

    def wrap(name):
        def wrapped(*args, **kwargs):
            if not seen:
                seen.append(traceback.extract_stack()[:-1])
            return originals[name](*args, **kwargs)
        return wrapped

    for name in originals:
        setattr(jax, name, wrap(name))
    sys.path.insert(0, str(ROOT / "experiments"))
    import runpy

    module = runpy.run_path(str(ROOT / "experiments" / "dropout_mlp.py"), run_name="lesson_path")
    with tempfile.TemporaryDirectory() as out:
        module["main"](["--dataset", "digits", "--epochs", "1", "--train-size", "256", "--quiet", "--out", out])
    for name, fn in originals.items():
        setattr(jax, name, fn)
    frames = [f for f in seen[0] if Path(f.filename).resolve().is_relative_to(ROOT)
              and Path(f.filename).resolve() != Path(__file__).resolve()]
    rows = [{"file": str(Path(f.filename).resolve().relative_to(ROOT)), "function": f.name, "line": f.lineno}
            for f in frames]
    files = list(dict.fromkeys(r["file"] for r in rows))
    imported = sorted(m for m in sys.modules if m == "regjax" or m.startswith("regjax."))
    return {"depth": len(rows), "files": files, "frames": rows, "regjax_modules_imported": imported}


if __name__ == "__main__":
    result = main()
    for r in result["frames"]:
        print(f"{r['file']}:{r['line']}  {r['function']}")
    print(json.dumps({"call_depth": result["depth"], "distinct_files": len(result["files"]),
                      "regjax_modules_imported": len(result["regjax_modules_imported"])}))
