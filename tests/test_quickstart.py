"""popdecode quickstart, shrunk to seconds (--fast): every stage's files and the final table."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest
import torch

from popdecode.cli import main
from popdecode.evaluate.results import read_results

COLUMNS = ["session", "POYO R^2", "adapted R^2 (4 trials)", "Wiener", "MLP", "GRU"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("qs") / "quickstart"
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            code = main(["quickstart", "--fast", "--out", str(out), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    yield out, code, buf.getvalue()


def test_every_stage_leaves_its_files(quick):
    out, code, _ = quick
    assert code == 0
    for path in ("data/pretrain/manifest.json", "data/pretrain/ground_truth.h5", "data/heldout/manifest.json",
                 "runs/pretrained/model.safetensors", "runs/pretrained/results_test.csv",
                 "runs/adapted/model.safetensors", "runs/adapted/results_test.csv", "runs/adapted/learning_curve.csv",
                 "baselines/baseline_wiener.csv", "baselines/baseline_mlp.csv", "baselines/baseline_gru.csv",
                 "report.html", "quickstart_results.csv", "quickstart_log.txt"):
        assert (out / path).is_file(), path


def test_final_table_columns_and_numbers(quick):
    out, _, printed = quick
    with (out / "quickstart_results.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS
    by_session = {r[0]: r[1:] for r in rows[1:]}
    held = "sim-a0-s1"  # the last session of animal 0
    assert set(by_session) == {"sim-a0-s0", "sim-a1-s0", "sim-a1-s1", held}
    assert rows[-1][0] == held  # the held-out session comes last
    poyo, adapted, wiener, mlp, gru = by_session[held]
    assert poyo == ""  # never seen in pretraining
    expect = {r.session: r.r2 for r in read_results(out / "runs" / "adapted" / "results_test.csv")}
    assert float(adapted) == pytest.approx(expect[held], abs=1e-6)
    for name, value in (("wiener", wiener), ("mlp", mlp), ("gru", gru)):
        (row,) = [r for r in read_results(out / "baselines" / f"baseline_{name}.csv") if r.session == held]
        assert float(value) == pytest.approx(row.r2, abs=1e-6)
    for sid in ("sim-a0-s0", "sim-a1-s0", "sim-a1-s1"):
        assert by_session[sid][0] != "" and by_session[sid][1] == "" and by_session[sid][2] != ""
    # The printed table: same header, then where the report is.
    header = next(line for line in printed.splitlines() if line.startswith("session"))
    assert header.split() == "session POYO R^2 adapted R^2 (4 trials) Wiener MLP GRU".split()
    assert f"report: {out / 'report.html'}" in printed


def test_report_compares_the_adapted_run_with_pretraining_and_baselines(quick):
    out, _, _ = quick
    page = (out / "report.html").read_text()
    header = page.split('<h2 id="r2-table">', 1)[1].split("</tr>", 1)[0]
    assert header.split("<table>", 1)[1].strip() == (
        "<tr><th>session</th><th>poyo + unit-id (4 trials)</th><th>poyo</th><th>wiener</th><th>mlp</th><th>gru</th>")
    assert "unit embeddings coloured by hidden neuron" in page


def test_refuses_to_mix_with_an_earlier_quickstart(quick, capsys):
    out, _, _ = quick
    before = (out / "quickstart_results.csv").read_text()
    assert main(["quickstart", "--fast", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"popdecode: error: {out} already holds a quickstart (data); pass --overwrite or choose another --out")
    assert (out / "quickstart_results.csv").read_text() == before


@pytest.mark.parametrize("argv, message", [
    (["--minutes", "0"], "--minutes must be positive (got 0.0)"),
    (["--labelled-trials", "0"], "--labelled-trials must be at least 1 (got 0)"),
    (["--steps", "0"], "--steps must be at least 1 (got 0)"),
    (["--threads", "0"], "--threads must be at least 1 (got 0)"),
])
def test_bad_options(tmp_path, capsys, argv, message):
    assert main(["quickstart", "--out", str(tmp_path / "q"), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"popdecode: error: {message}"
    assert not (tmp_path / "q").exists()
