from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY = {"scenario": "hypercube", "dim": 8, "n_invariant": 2, "steps": 40, "eval_every": 20, "batch_size": 64,
        "n_eval": 256, "lr": 0.003}


def write_spec(folder: Path, name: str = "tiny", **fields: Any) -> Path:
    spec = {"name": name, "trainable": dict(TINY), "grid": {"embedding_dim": [2, 4]}, "seeds": [0]}
    spec.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tmp_store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
