"""benchmarks/ssl_matrix.py in --tiny mode: the runs it trains, the table and JSON it writes, and that
a second call skips the finished runs."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("ssl_matrix")


def test_tiny_matrix_writes_table_and_json_and_resumes(bench, tmp_path, monkeypatch):
    argv = ["--tiny", "--variants", "hard", "--methods", "supervised", "tg_fixmatch", "--seeds", "0", "1"]
    argv += ["--out", str(tmp_path)]
    report = bench.main(argv)
    runs = report["runs"]
    assert [(r["arm"], r["seed"]) for r in runs] == [
        ("supervised", 0),
        ("supervised", 1),
        ("tg_fixmatch", 0),
        ("tg_fixmatch", 1),
    ]
    for r in runs:
        assert not r["skipped"] and r["steps"] == 2 and r["classes"] == 3
        assert 0 <= r["rgb"] <= 100
        assert ("tg" in r) == (r["arm"] == "tg_fixmatch")
        assert (tmp_path / "hard" / r["arm"] / f"seed{r['seed']}" / "eval.json").is_file()

    summary = json.loads((tmp_path / "matrix.json").read_text())["summary"]
    hard = summary["hard"]
    assert hard["chance"] == pytest.approx(100 / 3)
    cells = hard["cells"]
    assert {"supervised RGB", "TG-FixMatch RGB", "TG-FixMatch TG"} <= set(cells)
    assert not {"FixMatch RGB", "TG alone", "ceiling RGB"} & set(cells)  # arms not asked for
    sup = cells["supervised RGB"]
    assert sup["n"] == 2 and sup["values"] == [r["rgb"] for r in runs if r["arm"] == "supervised"]
    assert sup["mean"] == pytest.approx(sum(sup["values"]) / 2)
    assert sup["std"] == pytest.approx(abs(sup["values"][0] - sup["values"][1]) / 2**0.5)
    accuracy_stds = [c["std"] for h, c in cells.items() if not h.startswith("PL")]
    assert hard["noise_floor"] == pytest.approx(max(accuracy_stds))

    table = (tmp_path / "matrix.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| variant"))
    assert [h for h, _, _ in bench.COLUMNS] == header.strip("| ").split(" | ")[2:-1]
    row = next(line for line in table if line.startswith("| hard |"))
    assert row.count("|") == header.count("|")
    assert f"{sup['mean']:.1f} ± {sup['std']:.1f} (2)" in row

    # the same command again trains nothing: every run is finished
    monkeypatch.setattr(bench, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = bench.main(argv)
    assert all(r["skipped"] for r in again["runs"])
    assert [{k: v for k, v in r.items() if k != "skipped"} for r in again["runs"]] == [
        {k: v for k, v in r.items() if k != "skipped"} for r in runs
    ]
    # a finished run asked for with other settings is refused, not silently reused
    with pytest.raises(bench.ArgumentError, match="other settings"):
        bench.main(["loss.threshold=0.9", *argv, "--seeds", "0"])

    # another --out reuses the data of --data instead of building them again
    monkeypatch.undo()
    monkeypatch.setattr("tgsemi.demo.make_dataset", lambda *a, **k: pytest.fail("the data were built again"))
    other = bench.main([*argv[:-1], str(tmp_path / "other"), "--seeds", "0", "--data", str(tmp_path / "data")])
    assert [r["skipped"] for r in other["runs"]] == [False, False]
    # the 100 %-label arms run on the first seed only unless --ceiling-seeds says otherwise
    ceiling = ["--tiny", "--variants", "hard", "--methods", "ceiling_tg", "--data", str(tmp_path / "data")]
    ceiling += ["--seeds", "1", "0", "--out", str(tmp_path / "ceiling")]
    assert [r["seed"] for r in bench.main(ceiling)["runs"]] == [1]
    assert [r["seed"] for r in bench.main([*ceiling, "--ceiling-seeds", "0", "1"])["runs"]] == [0, 1]

    # a variant whose knobs changed is rebuilt, and the runs trained on the old data are refused
    monkeypatch.undo()
    monkeypatch.setitem(bench.TINY_VARIANTS, "hard", ("hard", {**bench._TINY_HARD, "noise": 4.0}))
    with pytest.raises(bench.ArgumentError, match="built otherwise"):
        bench.main(argv)
