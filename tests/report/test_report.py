"""popdecode report: the page's sections, figures, numbers, self-containedness and errors."""

from __future__ import annotations

import base64
import html as htmllib
import re
import shutil

import numpy as np
import pytest
import torch

from popdecode.cli import main
from popdecode.evaluate.metrics import r2_score
from popdecode.evaluate.prediction_file import read_predictions
from popdecode.evaluate.results import ResultRow, read_results, write_results
from popdecode.report.command import _owning_sessions, build_report

TINY = dict(dim=32, depth=1, num_latents_per_step=4, cross_heads=1, self_heads=1, dim_head=16,
            ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0)
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny simulated store (with ground truth), a tiny model trained a few steps, a Wiener
    results file, a hand-made 'mlp' results file, and the report written from them."""
    from popdecode.baselines.run import fit_baseline
    from popdecode.data.store import StoreWriter, open_sessions
    from popdecode.simulate.ground_truth import save_ground_truth
    from popdecode.simulate.simulator import SimulationConfig, simulate_dataset
    from popdecode.train.config import TrainConfig
    from popdecode.train.trainer import train_from_scratch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    sim = SimulationConfig(seed=3, num_animals=2, sessions_per_animal=2, trials_per_session=12,
                           min_units=12, max_units=18)
    sim.tuning.pool_size = 24  # small pools: sessions of one animal share many neurons
    sessions, truth = simulate_dataset(sim, show_progress=False)
    truth.rates.clear(), truth.latents.clear(), truth.command_noise.clear()
    with StoreWriter(root / "data") as writer:
        for s in sessions:
            writer.add(s)
        save_ground_truth(root / "data", truth)
    train_from_scratch(TrainConfig(data=[str(root / "data")], epochs=2, batch_size=16, lr=3e-3,
                                   optimizer="adamw", max_steps=4, model_overrides=TINY), root / "run")
    stored = open_sessions([str(root / "data")])
    write_results(root / "baseline_wiener.csv", [fit_baseline(s, "hand_vel", model="wiener").rows["test"] for s in stored])
    mlp = [ResultRow("mlp", "test", s.id, "hand_vel", 0.5 + 0.01 * i, 100) for i, s in enumerate(stored)]
    write_results(root / "baseline_mlp.csv", mlp[:-1])  # one session without an MLP row
    out = build_report(root / "run", compare=[root / "baseline_wiener.csv", root / "baseline_mlp.json"],
                       out=root / "report.html")
    yield root, out.read_text(), [s.id for s in sessions]
    torch.set_num_threads(threads)


def table_rows(page: str, section: str) -> dict[str, list[str]]:
    """First cell -> the other cells of every row of the first table after ``section``'s heading."""
    part = page.split(f'<h2 id="{section}">', 1)[1].split("</table>", 1)[0]
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", part, flags=re.S):
        cells = [htmllib.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr)]
        rows[cells[0]] = cells[1:]
    return rows


def test_page_has_every_section_in_order(tiny):
    _, page, _ = tiny
    ids = re.findall(r'<h2 id="([^"]+)">', page)
    assert ids == ["summary", "r2-table", "predictions", "training", "embeddings"]  # no learning curve here


def test_one_embedded_png_per_figure(tiny):
    _, page, sessions = tiny
    images = IMG.findall(page)
    assert page.count("<img") == len(images)  # every image is an embedded PNG
    alts = [alt for _, alt in images]
    assert alts == [f"decoded and recorded hand_vel of {s}" for s in sorted(sessions)] + [
        "training loss and validation R² per epoch", "unit embeddings coloured by hidden neuron", "session embeddings"]
    for data, _ in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_r2_table_holds_the_numbers_of_the_results_files(tiny):
    root, page, sessions = tiny
    rows = table_rows(page, "r2-table")
    assert rows["session"] == ["poyo", "wiener", "mlp"]
    poyo = {r.session: r.r2 for r in read_results(root / "run" / "results_test.csv")}
    wiener = {r.session: r.r2 for r in read_results(root / "baseline_wiener.csv")}
    mlp = {r.session: r.r2 for r in read_results(root / "baseline_mlp.csv")}
    for s in sessions:
        expected = [f"{poyo[s]:.4f}", f"{wiener[s]:.4f}", f"{mlp[s]:.4f}" if s in mlp else ""]
        assert rows[s] == expected
    mean = rows["mean over sessions"]
    assert mean == [f"{np.mean(list(poyo.values())):.4f}", f"{np.mean(list(wiener.values())):.4f}",
                    f"{np.mean(list(mlp.values())):.4f}"]


def test_missing_predictions_are_made_by_evaluate(tiny):
    root, page, _ = tiny
    # The run had no predictions: the report evaluated it and left evaluate's files behind,
    # and the table's POYO column is R^2 of those predictions, computed here directly.
    items = read_predictions(root / "run" / "predictions_test.h5")
    rows = table_rows(page, "r2-table")
    for it in items:
        assert rows[it.session][0] == f"{r2_score(it.target[it.eval_mask], it.prediction[it.eval_mask]):.4f}"


def test_nothing_external_is_referenced(tiny):
    _, page, _ = tiny
    assert "http:" not in page and "https:" not in page and "//" not in re.sub(IMG, "", page).split("<body>")[1]
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert set(re.findall(r'href="([^"]*)"', page)) <= {f"#{s}" for s in ("summary", "r2-table", "predictions",
                                                                          "training", "embeddings")}


def test_units_coloured_by_hidden_neuron_with_a_neighbour_score(tiny):
    _, page, _ = tiny
    text = page.split('<h2 id="embeddings">', 1)[1]
    assert re.search(r"Of \d+ units whose neuron is also recorded in another session of the same animal, "
                     r"\d+ \([\d.]+%\) have that same neuron as their nearest neighbour", text)


def test_real_data_without_ground_truth_colours_by_session(tiny, tmp_path):
    root, _, _ = tiny
    shutil.copytree(root / "data", tmp_path / "data")
    (tmp_path / "data" / "ground_truth.h5").unlink()
    shutil.copytree(root / "run", tmp_path / "run")
    page = build_report(tmp_path / "run", data=[str(tmp_path / "data")]).read_text()
    assert (tmp_path / "run" / "report.html").is_file()
    alts = [alt for _, alt in IMG.findall(page)]
    assert "unit embeddings coloured by session" in alts and "nearest neighbour" not in page


def test_learning_curve_of_an_adapted_run_is_embedded(tiny, tmp_path):
    root, _, _ = tiny
    run = tmp_path / "adapted"
    shutil.copytree(root / "run", run)
    (run / "learning_curve.csv").write_text(
        "mode,labelled_trials,session,r2_adapt,r2_scratch\nunit-id,5,sim-a0-s1,0.61,0.12\nunit-id,10,sim-a0-s1,0.7,0.3\n")
    png = base64.b64decode(IMG.findall(tiny[1])[0][0])
    (run / "learning_curve.png").write_bytes(png)
    page = build_report(run, out=tmp_path / "r.html").read_text()
    assert re.findall(r'<h2 id="([^"]+)">', page)[4] == "adaptation"
    rows = table_rows(page, "adaptation")
    assert rows["mode"] == ["labelled_trials", "session", "r2_adapt", "r2_scratch"]
    assert rows["unit-id"] == ["10", "sim-a0-s1", "0.7000", "0.3000"]  # last row with this key
    assert "adaptation learning curve of adapted" in [alt for _, alt in IMG.findall(page)]


def test_bad_inputs_fail_with_one_line(tiny, tmp_path, capsys):
    root, _, _ = tiny
    cases = [
        ([str(tmp_path / "nope")],
         f"popdecode: error: run directory {tmp_path / 'nope'} does not exist; pass a directory written by popdecode train or adapt"),
        ([str(root / "run"), "--compare", str(tmp_path / "x.txt")],
         f"popdecode: error: --compare {tmp_path / 'x.txt'} is neither a results .csv/.json file nor a run directory (no model.json there)"),
        ([str(root / "run"), "--compare", str(root / "baseline_wiener.csv"), "--split", "valid",
          "--out", str(tmp_path / "r.html")],
         f"popdecode: error: --compare {root / 'baseline_wiener.csv'} holds no valid results (only test); "
         "compare on --split test, or re-run that command on the valid split"),
        ([str(root / "run"), "--out", str(tmp_path / "r.pdf")],
         f"popdecode: error: --out must name an .html file, got {tmp_path / 'r.pdf'}"),
    ]
    for argv, message in cases:
        assert main(["report", *argv]) == 2
        assert capsys.readouterr().err.strip() == message
    assert not list(tmp_path.iterdir())  # nothing written


def test_session_of_each_unit_row_allows_slashes_in_ids():
    assert _owning_sessions(["a/b/u1", "a/u2", "c/u/3"], ["a", "a/b", "c"]) == ["a/b", "a", "c"]
