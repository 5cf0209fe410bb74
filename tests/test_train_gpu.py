"""benchmarks/train_gpu.py on the CPU in --tiny mode: the data set it writes, what it
measures and the wall time it projects (the GPU numbers themselves need a GPU)."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from conftest import load_script
from tgsemi.data.annotations import read_list


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("train_gpu")


def test_data_is_written_once_and_listed_up_to_the_pool(bench, tmp_path):
    args = dict(classes=2, per_class=5, size=(32, 24), frames=(12, 16), pool=23)
    first = bench.build_data(tmp_path, **args)
    assert first["videos"] == 10 and first["synth_s"] is not None
    assert sorted(p.name for p in tmp_path.glob("part*")) == ["part000", "part001"]  # groups of 4 clips
    train = read_list(tmp_path / "lists/train.txt").samples
    assert len(train) == 23 and len(set(train)) == 10 and {s.label for s in train} == {0, 1}
    assert all((tmp_path / s.path).is_file() for s in train + read_list(tmp_path / "lists/test.txt").samples)
    assert bench.build_data(tmp_path, **args)["synth_s"] is None  # reused
    assert bench.build_data(tmp_path, **{**args, "frames": (12, 18)})["synth_s"] is not None  # another recipe


def test_tiny_run_measures_and_projects(bench, tmp_path):
    out = tmp_path / "result.json"
    bench.main(["--tiny", "--device", "cpu", "--workers", "1", "--data", str(tmp_path / "data"), "--json", str(out)])
    result = json.loads(out.read_text())
    runs, p = result["runs"], result["projection"]
    assert [r["batch"] for r in runs] == [1, 8] and result["device"] == "cpu"
    for r in runs:
        assert r["clips_per_step"] == 2 * r["batch"] and r["workers"] == 1 and r["nonfinite_steps"] == 0
        assert all(len(v) == result["steps"] for v in r["per_step"].values())
        assert r["data_wait_s"] >= 0 and r["to_device_s"] >= 0 and r["compute_s"] > 0
        assert r["step_s"] == pytest.approx(r["data_wait_s"] + r["to_device_s"] + r["compute_s"])
        assert 0 <= r["gpu_busy"] <= 1
        assert r["clips_per_s"] > 0 and r["step_only_clips_per_s"] > 0
    assert p["steps_per_epoch"] == 9537 // 8 and p["steps"] == 180 * p["steps_per_epoch"]
    one, multi = p["one_gpu"], p["multi_gpu"]
    assert (one["gpus"], one["batch_per_gpu"], multi["gpus"], multi["batch_per_gpu"]) == (1, 8, 8, 1)
    assert one["wall_s"] == pytest.approx(p["steps"] * runs[1]["step_s"])
    assert multi["wall_s"] == pytest.approx(p["steps"] * runs[0]["step_s"])  # each GPU at the 1 + 1 rate
    assert 0 < multi["wall_s"] < one["wall_s"]  # 1 + 1 clips a step, even on a busy CPU, take less than 8 + 8
    assert multi["compute_only_wall_s"] > 0 and one["compute_only_wall_s"] > 0  # too close to order at this size
    assert "no communication cost" in p["assumes"]
