import logging
import os
from pathlib import Path

import pytest
import torch

from tgsemi import cpus
from tgsemi.config import config_changes, load_config
from tgsemi.engine import train
from tgsemi.errors import ConfigError


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """A fake file system under ``root``: {relative path: content}."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


@pytest.fixture
def no_omp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "cpu_max, expected",
    [
        ("200000 100000\n", 2),
        ("max 100000\n", None),
        ("150000 100000", 1),
        ("50000 100000", 1),
        ("800000 200000", 4),
    ],
)
def test_v2_quota_is_whole_cpus_rounded_down_at_least_one(tmp_path, cpu_max, expected):
    tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": cpu_max})
    assert cpus.cgroup_quota(tmp_path) == expected


def test_v2_the_tightest_limit_on_the_path_to_the_root_wins(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
            "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "300000 100000",
            "sys/fs/cgroup/kubepods/cpu.max": "800000 100000",
        },
    )
    assert cpus.cgroup_quota(tmp_path) == 3
    tree(tmp_path, {"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "500000 100000"})  # looser than its parent
    assert cpus.cgroup_quota(tmp_path) == 3
    tree(tmp_path, {"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "200000 100000"})
    assert cpus.cgroup_quota(tmp_path) == 2


def test_v2_a_container_seeing_its_own_cgroup_at_the_mount_root(tmp_path):
    # the host's path does not exist inside the container; the limit is the mount root's
    tree(
        tmp_path, {"proc/self/cgroup": "0::/system.slice/docker-abc.scope\n", "sys/fs/cgroup/cpu.max": "300000 100000"}
    )
    assert cpus.cgroup_quota(tmp_path) == 3


@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu"])
def test_v1_quota_over_period(tmp_path, mount):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
            f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_quota_us": "250000\n",
            f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus.cgroup_quota(tmp_path) == 2


def test_v1_quota_at_the_controller_root_and_minus_one_for_none(tmp_path):
    files = {
        "proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "400000",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
    }
    assert cpus.cgroup_quota(tree(tmp_path, files)) == 4
    tree(tmp_path, {"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1"})
    assert cpus.cgroup_quota(tmp_path) is None


def test_v1_and_v2_together_the_tighter_wins(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "1:cpu:/\n0::/\n",
            "sys/fs/cgroup/cpu.max": "600000 100000",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "200000",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
        },
    )
    assert cpus.cgroup_quota(tmp_path) == 2


@pytest.mark.parametrize(
    "files",
    [
        {},  # no /proc at all
        {"proc/self/cgroup": "0::/\n"},  # no cgroup files
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "lots of cpus"},
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "abc 100000"},
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 0"},
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "-5 100000"},
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000"},
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": b"\xff\xfe\x00 1"},
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max/x": ""},  # a folder where a file should be
        {"proc/self/cgroup": "garbage\n::\n0::relative\n\x00", "sys/fs/cgroup/cpu.max": "100000 100000"},
        {"proc/self/cgroup": b"\xff\xfe", "sys/fs/cgroup/cpu.max": "100000 100000"},
        {"proc/self/cgroup": "4:cpu:/a\n", "sys/fs/cgroup/cpu/a/cpu.cfs_quota_us": "200000"},  # no period
        {
            "proc/self/cgroup": "4:cpu:/a\n",
            "sys/fs/cgroup/cpu/a/cpu.cfs_quota_us": "2e5",
            "sys/fs/cgroup/cpu/a/cpu.cfs_period_us": "100000",
        },
    ],
)
def test_missing_or_malformed_files_set_no_limit(tmp_path, files):
    assert cpus.cgroup_quota(tree(tmp_path, files)) is None


def test_a_cgroup_path_cannot_climb_out_of_the_mount(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/../../elsewhere\n",
            "sys/fs/cgroup/cpu.max": "max 100000",
            "sys/cpu.max": "100000 100000",
            "elsewhere/cpu.max": "100000 100000",
        },
    )
    assert cpus.cgroup_quota(tmp_path) is None


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(tmp_path, monkeypatch):
    tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cpus.usable_cpus(root=tmp_path) == (2, "cgroup quota")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert cpus.usable_cpus(root=tmp_path) == (1, "affinity")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cpus.usable_cpus(root=tmp_path / "nothing") == (8, "affinity")


def test_configured_cpus_win_over_detection(tmp_path, monkeypatch, no_omp):
    tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cpus.usable_cpus(6, tmp_path) == (6, "config")
    assert cpus.plan(6, 0, root=tmp_path) == cpus.CpuPlan(6, "config", 0, 6, "CPUs less workers")
    assert cpus.plan(None, 0, root=tmp_path) == cpus.CpuPlan(2, "cgroup quota", 0, 2, "CPUs less workers")


def test_omp_num_threads_wins_for_the_intra_op_threads(tmp_path, monkeypatch, no_omp, threads_restored):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    torch.set_num_threads(3)
    assert cpus.plan(None, "auto", root=tmp_path) == cpus.CpuPlan(8, "affinity", 7, 1, "CPUs less workers")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # PyTorch read it at start-up; its count stands
    assert cpus.plan(None, "auto", root=tmp_path) == cpus.CpuPlan(8, "affinity", 7, 3, "OMP_NUM_THREADS")
    assert cpus.plan(4, 1, root=tmp_path) == cpus.CpuPlan(4, "config", 1, 3, "OMP_NUM_THREADS")


@pytest.mark.parametrize(
    "num_workers, per_process, cache, expected",
    [
        ("auto", 1, False, 0),
        ("auto", 2, False, 1),
        ("auto", 9, False, 8),
        ("auto", 64, False, cpus.MAX_AUTO_WORKERS),
        ("auto", 8, True, 0),
        (3, 1, False, 3),
        (0, 64, False, 0),
    ],
)
def test_auto_loader_workers(num_workers, per_process, cache, expected):
    assert cpus.loader_workers(num_workers, per_process, cache) == expected


def test_processes_on_one_machine_share_its_cpus(tmp_path, monkeypatch, no_omp):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cpus.plan(None, "auto", root=tmp_path) == cpus.CpuPlan(4, "affinity", 3, 1, "CPUs less workers")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")  # more processes than CPUs: each still gets one
    assert cpus.plan(None, "auto", root=tmp_path) == cpus.CpuPlan(1, "affinity", 0, 1, "CPUs less workers")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "many")
    assert cpus.local_world_size() == 1


def test_config_accepts_auto_workers_and_cpus():
    assert load_config("ucf101").data.num_workers == "auto"
    assert load_config("synthetic_cpu").data.num_workers == 0
    cfg = load_config("synthetic_tiny", ["data.num_workers=auto", "data.cache_frames=true", "train.cpus=4"])
    assert (cfg.data.num_workers, cfg.train.cpus) == ("auto", 4)
    # speed only: a run may resume with other values
    assert config_changes(load_config("synthetic_tiny"), cfg) == []
    with pytest.raises(ConfigError, match=r"data.num_workers: .*>= 0 or 'auto', got 'many'"):
        load_config("synthetic_tiny", ["data.num_workers=many"])
    with pytest.raises(ConfigError, match="data.num_workers: .*got -1"):
        load_config("synthetic_tiny", ["data.num_workers=-1"])
    with pytest.raises(ConfigError, match="train.cpus"):
        load_config("synthetic_tiny", ["train.cpus=0"])
    with pytest.raises(ConfigError, match="cache_frames needs num_workers=0"):
        load_config("synthetic_tiny", ["data.num_workers=1", "data.cache_frames=true"])


@pytest.mark.parametrize(
    "overrides, omp, threads, summary",
    [
        ([], False, 1, "1 CPU(s) per process (affinity), 1 intra-op thread(s) (CPUs less workers), 0 loader worker(s)"),
        (["train.cpus=3"], False, 3, "3 CPU(s) per process (config), 3 intra-op thread(s) (CPUs less workers)"),
        ([], True, 2, "1 CPU(s) per process (affinity), 2 intra-op thread(s) (OMP_NUM_THREADS)"),
    ],
)
def test_training_sizes_torch_threads_from_the_usable_cpus(
    tiny_root, tmp_path, monkeypatch, caplog, no_omp, threads_restored, overrides, omp, threads, summary
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # as if the container granted one CPU
    if omp:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    cfg = load_config("synthetic_tiny", [f"data.root={tiny_root}", "train.max_steps=1", *overrides])
    with caplog.at_level(logging.INFO, logger="tgsemi.engine"):
        train(cfg, tmp_path / "run")
    assert torch.get_num_threads() == threads
    assert summary in caplog.text
