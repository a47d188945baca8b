"""Our Triton kernels' code run by Triton's interpreter on the CPU, in a subprocess: the
interpreter must be chosen before Triton is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def run_interpreted(script: str, inputs: Any, tmp_path: Path) -> Any:
    """Run `script` with TRITON_INTERPRET=1; it reads `torch.load(sys.argv[1])` (the inputs)
    and writes its outputs to `sys.argv[2]` with torch.save; returns those."""
    given, taken = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(inputs, given)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-c", script, str(given), str(taken)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(taken)
