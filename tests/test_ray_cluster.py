"""RaySampler connects to an existing Ray cluster (``address=...``) and samples what the local
sampler samples. The cluster is a head node started with ``ray start``; the driver is a fresh
Python process (this test process may already run its own Ray instance)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray sampler needs the 'ray' extra (pip install 'metarl[ray]')")

DRIVER = """
import numpy as np, ray
import metarl
from metarl.samplers import LinearGaussianPolicy, LocalSampler, RaySampler

fam = metarl.make_family("Navigation2D-v0")
rng = np.random.default_rng(0)
state = {"W": rng.normal(size=(2, 2)), "b": np.zeros(2), "log_std": np.full(2, -1.0)}
local = LocalSampler(fam, envs_per_task=2).sample(LinearGaussianPolicy(), state, fam.train[:4], 2, seed=3)
with RaySampler(fam, envs_per_task=2, num_workers=2, cpus_per_worker=0.5, address=ADDRESS, timeout=120) as remote:
    nodes = ray.nodes()
    batch = remote.sample(LinearGaussianPolicy(), state, fam.train[:4], 2, seed=3)
for name in ("observations", "actions", "rewards", "mask"):
    np.testing.assert_array_equal(getattr(local, name), getattr(batch, name))
print("connected", len(nodes), ray.is_initialized())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ray_sampler_connects_to_an_existing_cluster(tmp_path: Path) -> None:
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    head = [
        ray_cli,
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--include-dashboard=false",
    ]
    subprocess.run(head, check=True, env=env, capture_output=True, timeout=120)
    try:
        driver = DRIVER.replace("ADDRESS", repr(f"127.0.0.1:{port}"))
        out = subprocess.run(
            [sys.executable, "-c", driver], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-3000:]
        # the sampler joined the running cluster (one node) and disconnected when closed
        assert "connected 1 False" in out.stdout
    finally:
        subprocess.run([ray_cli, "stop"], env=env, capture_output=True, timeout=120)
