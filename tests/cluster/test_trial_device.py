"""A trial uses exactly the GPU Ray gave it, caps its memory to its share, and runs on the CPU when it
was given none: ``trainables.contrastive.trial_device`` inside real Tune trials on a Ray with one
logical GPU (tests/cluster/device_probe.py, in its own process: the session's Ray has no GPU)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile

import torch

from tests.cluster.conftest import REPO


def test_a_trial_uses_the_gpu_share_ray_gave_it_and_the_cpu_without_one(tmp_path):
    ray_temp = tempfile.mkdtemp(prefix="clp", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "PROBE_STORAGE": str(tmp_path),
           "PROBE_RAY_TEMP": ray_temp, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.cluster.device_probe"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    no_gpu, quarter = (json.loads(proc.stdout.strip().splitlines()[-1])[k] for k in ("no_gpu", "quarter_gpu"))

    # Given no GPU: the CPU, even where torch sees CUDA, and no memory cap.
    assert no_gpu["assigned_gpu"] == 0.0
    assert no_gpu["device"] == no_gpu["device_if_cuda"] == "cpu"
    assert json.loads(no_gpu["memory_caps_if_cuda"]) == []
    # Given a quarter of GPU 0: Ray assigned it and made it the only device the trial can see ...
    assert quarter["assigned_gpu"] == 0.25
    assert quarter["cuda_visible_devices"] == "0"
    # ... torch without CUDA falls back to the CPU; torch with CUDA uses that device, capped to its share.
    assert quarter["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert quarter["device_if_cuda"] == "cuda:0"
    assert json.loads(quarter["memory_caps_if_cuda"]) == [[0.25, "cuda:0"]]
