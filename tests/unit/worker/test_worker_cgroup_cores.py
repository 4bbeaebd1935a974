"""The worker's core count under a cgroup CPU quota, v2 and v1, in a container and on a host.

The trees here are laid out as the kernel mounts them (files under a scratch directory standing
for /sys/fs/cgroup, and a /proc/self/cgroup of the matching form). A real v1 limit on a real
container (docker run --cpus 1) is checked by tests/image/test_image_stack.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.config import available_cores, cgroup_cpu_quota

CORES = len(os.sched_getaffinity(0))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def v1_tree(root: Path, quota: int, period: int = 100000, below: str = "") -> Path:
    """A v1 cpu controller mounted at root/cpu (its own cgroup at ``below``); the membership file."""
    write(root / "cpu" / "cpu.cfs_quota_us", "-1")
    write(root / "cpu" / "cpu.cfs_period_us", "100000")
    write(root / "cpu" / below.strip("/") / "cpu.cfs_quota_us", str(quota))
    write(root / "cpu" / below.strip("/") / "cpu.cfs_period_us", str(period))
    membership = root / "self-cgroup"
    write(membership, f"5:memory:/{below.strip('/')}\n4:cpu,cpuacct:/{below.strip('/')}\n0::/")
    return membership


def test_v1_quota_inside_a_container_caps_the_cores(tmp_path: Path) -> None:
    # A container on a v1 host: its cgroup is the mount's root, and /proc/self/cgroup names the
    # host's path (docker/ID), which does not exist inside the container.
    membership = v1_tree(tmp_path, quota=50000)
    write(membership, "4:cpu,cpuacct:/docker/0123abcd\n1:name=systemd:/docker/0123abcd")
    assert cgroup_cpu_quota(tmp_path, membership) == 0.5
    assert available_cores(tmp_path, membership) == 1


def test_v1_quota_of_one_and_a_half_cpus_rounds_up(tmp_path: Path) -> None:
    membership = v1_tree(tmp_path, quota=150000)
    assert cgroup_cpu_quota(tmp_path, membership) == 1.5
    assert available_cores(tmp_path, membership) == min(CORES, 2)


def test_v1_without_a_quota_leaves_the_affinity_mask(tmp_path: Path) -> None:
    membership = v1_tree(tmp_path, quota=-1)
    assert cgroup_cpu_quota(tmp_path, membership) is None
    assert available_cores(tmp_path, membership) == CORES


def test_v1_quota_of_a_host_process_below_the_root_counts(tmp_path: Path) -> None:
    # A worker run by systemd with CPUQuota=50% on a v1 host: the limit is on its unit's cgroup.
    membership = v1_tree(tmp_path, quota=50000, below="system.slice/animegan-worker.service")
    assert cgroup_cpu_quota(tmp_path, membership) == 0.5


def test_v1_controller_mounted_as_cpu_cpuacct_without_the_cpu_link(tmp_path: Path) -> None:
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "200000")
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    membership = tmp_path / "self-cgroup"
    write(membership, "4:cpu,cpuacct:/")
    assert cgroup_cpu_quota(tmp_path, membership) == 2.0


@pytest.mark.parametrize(("cpu_max", "expected"), [("150000 100000", 1.5), ("max 100000", None), ("0 100000", None)])
def test_v2_quota_inside_a_container(tmp_path: Path, cpu_max: str, expected: float | None) -> None:
    write(tmp_path / "cpu.max", cpu_max)
    membership = tmp_path / "self-cgroup"
    write(membership, "0::/")
    assert cgroup_cpu_quota(tmp_path, membership) == expected


def test_v2_the_smallest_quota_on_the_way_down_wins(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000")
    write(tmp_path / "work.slice" / "cpu.max", "100000 100000")
    write(tmp_path / "work.slice" / "worker.service" / "cpu.max", "300000 100000")
    membership = tmp_path / "self-cgroup"
    write(membership, "0::/work.slice/worker.service")
    assert cgroup_cpu_quota(tmp_path, membership) == 1.0
    assert available_cores(tmp_path, membership) == 1


def test_no_cgroup_files_at_all_leaves_the_affinity_mask(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None
    assert available_cores(tmp_path, tmp_path / "missing") == CORES


def test_unreadable_values_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "lots")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    write(tmp_path / "cpu.max", "garbage")
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None
