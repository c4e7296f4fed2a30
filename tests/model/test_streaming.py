"""The streaming path (decode_window in eval mode) computes what forward() computes."""

import pytest
import torch

from popdecode.model import streaming
from popdecode.model.rotary import rotary_phases

from model_helpers import random_batch, tiny_model, window

LENGTHS, OUT_LENGTHS = [3, 40, 201, 2], [6, 1, 17, 2]


def _reference(model, w, readout):
    r = model.readout_names.index(readout)
    return model.forward_packed(
        input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
        input_lengths=w.input_lengths, session_index=w.session_index, output_times=w.output_times,
        output_lengths=w.output_lengths, output_readout=torch.full_like(w.output_readout, r),
    )[readout]


def _decode(decoder, w, readout=None):
    kwargs = dict(input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
                  session_index=int(w.session_index[0]), output_times=w.output_times)
    return decoder(**kwargs, readout=readout) if readout is not None else decoder(**kwargs)


@pytest.mark.parametrize("readout", ["hand_vel", "position"])
def test_decode_window_equals_forward_for_windows_of_any_length(readout):
    model = tiny_model(readouts={"hand_vel": 2, "position": 3})
    batch = random_batch(model, LENGTHS, OUT_LENGTHS, seed=1)
    with torch.no_grad():
        for b in range(len(LENGTHS)):
            w = window(batch, b)
            got = model.decode_window(input_units=w.input_units, input_types=w.input_types,
                                      input_times=w.input_times, session_index=int(w.session_index[0]),
                                      output_times=w.output_times, readout=readout)
            torch.testing.assert_close(got, _reference(model, w, readout), atol=1e-5, rtol=0)


@pytest.mark.parametrize("halves", [False, True])
@pytest.mark.parametrize("table", [True, False])
def test_both_rotation_layouts_compute_the_same_function(halves, table, monkeypatch):
    # halves=True is what the compiled path runs; checked here without compiling. Without
    # the key/value table (a vocabulary too large to tabulate) keys are projected per token.
    if not table:
        monkeypatch.setattr(streaming, "_MAX_KV_TABLE", 0)
    model = tiny_model()
    batch = random_batch(model, LENGTHS, OUT_LENGTHS, seed=2)
    head = model.readouts["hand_vel"]
    heads = (model.config.cross_heads, model.config.self_heads, model.config.dim_head)
    with torch.no_grad():
        weights = streaming.fold(model, halves=halves)
        assert ("enc.kv_table" in weights) == table
        for b in range(len(LENGTHS)):
            w = window(batch, b)
            if halves:  # what the compiled path runs (times in, cos/sin inside)
                got = streaming.compiled_window_forward(
                    weights, w.input_units, w.input_types, w.input_times, w.session_index, w.output_times,
                    head.weight, head.bias, heads=heads)[0]
            else:
                got = streaming.window_forward(
                    weights, w.input_units, w.input_types, rotary_phases(w.input_times, model.omega), w.session_index,
                    rotary_phases(w.output_times, model.omega), head.weight, head.bias, heads=heads, halves=False)
            torch.testing.assert_close(got, _reference(model, w, "hand_vel"), atol=1e-5, rtol=0)


def test_streaming_follows_weight_updates_and_vocabulary_growth():
    model = tiny_model()
    batch = random_batch(model, [30], [4])
    w = window(batch, 0)
    with torch.no_grad():
        before = model.decode_window(input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
                                     session_index=int(w.session_index[0]), output_times=w.output_times)
        model.proc_layers[0].attn.to_qkv.weight.mul_(1.5)  # folded weights must be recomputed
        model.enc_atn.to_q.weight.mul_(0.5)  # ... and the latents' cached queries
        after = model.decode_window(input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
                                    session_index=int(w.session_index[0]), output_times=w.output_times)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, _reference(model, w, "hand_vel"), atol=1e-5, rtol=0)
    model.unit_vocab.add(["new/0"])
    with torch.no_grad():
        after_growth = model.decode_window(
            input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
            session_index=int(w.session_index[0]), output_times=w.output_times)
    torch.testing.assert_close(after_growth, after, atol=1e-6, rtol=0)


def test_a_model_with_a_decoder_still_copies_and_pickles():
    import copy
    import pickle

    model = tiny_model()
    w = window(random_batch(model, [20], [3]), 0)
    with torch.no_grad():
        expected = _decode(model.decode_window, w)
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert clone._streaming is None
            torch.testing.assert_close(_decode(clone.decode_window, w), expected, atol=0, rtol=0)


def test_decode_window_in_training_mode_keeps_dropout():
    model = tiny_model()
    model.config.atn_dropout = 0.0
    for m in model.modules():  # give the tiny model dropout, then train mode
        if hasattr(m, "p"):
            m.p = 0.5
    model.train()
    batch = random_batch(model, [30], [4])
    w = window(batch, 0)
    torch.manual_seed(0)
    a = _decode(model.decode_window, w)
    b = _decode(model.decode_window, w)
    assert not torch.allclose(a, b)


def test_a_failing_compiler_leaves_decode_window_eager(monkeypatch):
    def broken(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    model = tiny_model()
    with pytest.warns(UserWarning, match="decoding windows eagerly"):
        assert model.compile_for_inference() is False
    w = window(random_batch(model, [12], [3]), 0)
    with torch.no_grad():
        torch.testing.assert_close(_decode(model.decode_window, w), _reference(model, w, "hand_vel"), atol=1e-5, rtol=0)


@pytest.mark.compile
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, from inside the compiler
def test_compiled_decode_window_equals_forward():
    # One TorchInductor compilation of the tiny model (~15-40 s on 2 busy cores; `-m "not
    # compile"` skips it); every window length after the first reuses it.
    model = tiny_model(readouts={"hand_vel": 2, "position": 3})
    assert model.compile_for_inference()  # False: fell back to eager, and this test would be vacuous
    assert model._streaming.compiled
    batch = random_batch(model, LENGTHS, OUT_LENGTHS, seed=3)
    with torch.no_grad():
        for b in range(len(LENGTHS)):
            w = window(batch, b)
            for readout in ("hand_vel", "position"):
                got = _decode(model.decode_window, w, readout)
                torch.testing.assert_close(got, _reference(model, w, readout), atol=1e-5, rtol=0)


def test_streaming_decodes_with_mixed_rows_and_follows_their_training():
    model = tiny_model().eval()
    w = window(random_batch(model, [30], [4]), 0)
    rows = model.unit_vocab.weight.shape[0]
    new = torch.zeros(rows, dtype=torch.bool)
    new[torch.unique(w.input_units)] = True  # the window's units become mixtures ...
    new[0] = new[rows - 1] = False  # ... of the rows left known (the last one at least)
    mixture = model.unit_vocab.mix_rows(new.numpy())
    with torch.no_grad():
        start = _decode(model.decode_window, w)
        torch.testing.assert_close(start, _reference(model, w, "hand_vel"), atol=1e-5, rtol=0)
        mixture.logits.normal_()  # as an optimiser step would
        moved = _decode(model.decode_window, w)
        assert not torch.allclose(start, moved)
        torch.testing.assert_close(moved, _reference(model, w, "hand_vel"), atol=1e-5, rtol=0)
