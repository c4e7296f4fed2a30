import dataclasses

import numpy as np
import pytest
import torch

from popdecode.model import POYO, PRESETS, count_parameters
from popdecode.model.dropout import Dropout
from popdecode.model.packing import Packing

from model_helpers import TINY, random_batch, tiny_model, window


@pytest.mark.parametrize("preset,expected", [("poyo-1.3M", 1_257_410), ("poyo-11.8M", 11_724_162)])
def test_parameter_counts_match_the_paper(preset, expected):
    model = POYO(config=PRESETS[preset], readouts={"hand_vel": 2})
    model.unit_vocab.add([f"s/{i}" for i in range(50)])
    model.session_vocab.add(["s"])
    assert count_parameters(model) == expected


def test_latent_grid_is_eight_steps_of_sixteen():
    model = POYO(config=PRESETS["poyo-1.3M"], readouts={"hand_vel": 2})
    assert model.latent_times.shape == (128,)
    np.testing.assert_allclose(model.latent_times[::16].numpy(), np.arange(8) * 0.125 + 0.0625)
    assert model.latent_rows[:17].tolist() == list(range(16)) + [0]


def test_each_window_decodes_the_same_alone_or_packed_with_others():
    model = tiny_model()
    batch = random_batch(model, [50, 80, 30], [7, 3, 12])
    with torch.no_grad():
        packed = model(batch)["hand_vel"]
        alone = torch.cat([model(window(batch, b))["hand_vel"] for b in range(3)])
    assert packed.shape == (22, 2)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=0)


def test_padded_entry_point_and_decode_window_agree_with_forward():
    model = tiny_model()
    batch = random_batch(model, [40, 60], [5, 9])
    b = 1
    w = window(batch, b)
    with torch.no_grad():
        ref = model(batch)["hand_vel"][5:]
        streamed = model.decode_window(input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
                                       session_index=int(w.session_index[0]), output_times=w.output_times)
        units = torch.zeros(2, 60, dtype=torch.int64); types = torch.zeros_like(units); times = torch.zeros(2, 60)
        mask = torch.arange(60)[None] < batch.input_lengths[:, None]
        units[mask], types[mask], times[mask] = batch.input_units, batch.input_types, batch.input_times
        otimes = torch.zeros(2, 9); omask = torch.arange(9)[None] < batch.output_lengths[:, None]
        otimes[omask] = batch.output_times
        padded = model.forward_padded(input_units=units, input_types=types, input_times=times, input_mask=mask,
                                      session_index=batch.session_index, output_times=otimes, output_mask=omask)["hand_vel"]
    torch.testing.assert_close(streamed, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[5:], ref, atol=1e-5, rtol=0)


def test_readouts_route_queries_to_their_heads_in_query_order():
    model = tiny_model(readouts={"hand_vel": 2, "position": 3})
    batch = random_batch(model, [30, 30, 30], [4, 5, 6], readouts=[1, 0, 1])
    with torch.no_grad():
        out = model(batch)
        single = tiny_model(readouts={"hand_vel": 2, "position": 3})
    assert out["hand_vel"].shape == (5, 2) and out["position"].shape == (10, 3)
    # The same query vectors through each head by hand.
    with torch.no_grad():
        lat = model.encode(batch.input_units, batch.input_types, batch.input_times, batch.input_lengths)
        x = model.decode_latents(lat, batch.session_index, batch.output_times, batch.output_lengths)
    pos_rows = torch.nonzero(batch.output_readout == 1).squeeze(1)
    torch.testing.assert_close(out["position"], model.readouts["position"](x[pos_rows]))
    torch.testing.assert_close(out["hand_vel"], model.readouts["hand_vel"](x[4:9]))
    assert single is not model


def test_every_parameter_gets_a_gradient_even_for_an_absent_readout():
    """DistributedDataParallel without find_unused_parameters needs this."""
    model = tiny_model(readouts={"hand_vel": 2, "position": 2}).train()
    batch = random_batch(model, [30, 20], [4, 5])  # hand_vel only
    out = model(batch)
    assert set(out) == {"hand_vel"}
    out["hand_vel"].pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert torch.count_nonzero(model.readouts["position"].weight.grad) == 0


def test_bf16_autocast_covers_the_processor_only_on_cpu_and_stays_close_to_fp32():
    """Under CPU autocast the blocks whose shapes vary per batch (encoder attention, decoder,
    readouts) run in float32 (model/precision.py); the processor runs in bfloat16."""
    model = tiny_model()
    batch = random_batch(model, [60, 40], [10, 10])
    seen = {}
    for name in ("enc_atn", "dec_atn"):
        getattr(model, name).register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.dtype))
    model.proc_layers[0].attn.register_forward_hook(lambda m, a, out: seen.__setitem__("proc", out.dtype))
    with torch.no_grad():
        ref = model(batch)["hand_vel"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batch)["hand_vel"]
    assert seen == {"enc_atn": torch.float32, "dec_atn": torch.float32, "proc": torch.bfloat16}
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.05 * ref.abs().max() + 1e-2
    assert not torch.equal(low, ref)  # the processor did run in bfloat16


def test_dropout_is_active_in_training_only():
    model = POYO(config=dataclasses.replace(TINY, lin_dropout=0.5), readouts={"hand_vel": 2})
    model.unit_vocab.add([f"s0/{u}" for u in range(10)]); model.session_vocab.add(["s0"])
    batch = random_batch(model, [30], [5])
    model.train()
    assert not torch.equal(model(batch)["hand_vel"], model(batch)["hand_vel"])
    model.eval()
    assert torch.equal(model(batch)["hand_vel"], model(batch)["hand_vel"])


def test_packing_round_trip():
    p = Packing.from_lengths(torch.tensor([2, 0, 3]))
    x = torch.arange(5.0)
    grid = p.pad(x)
    assert grid.tolist() == [[0, 1, 0], [0, 0, 0], [2, 3, 4]]
    assert p.mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert torch.equal(p.unpad(grid), x)


def test_empty_window_is_refused():
    model = tiny_model()
    batch = random_batch(model, [10, 10], [2, 2])
    batch.input_lengths = torch.tensor([20, 0])
    with pytest.raises(ValueError, match="at least one input token"):
        model(batch)


def test_inference_cache_of_folded_weights_follows_weight_updates():
    model = tiny_model()
    batch = random_batch(model, [30, 20], [4, 5])
    with torch.no_grad():
        cached = model(batch)["hand_vel"]
        again = model(batch)["hand_vel"]  # served from the cache
    fresh = model(batch)["hand_vel"].detach()  # grad enabled: folds afresh
    torch.testing.assert_close(cached, fresh, atol=1e-6, rtol=0)
    assert torch.equal(cached, again)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(batch)["hand_vel"].sum().backward()
    opt.step()  # in-place updates bump the weights' versions
    with torch.no_grad():
        after = model(batch)["hand_vel"]
    torch.testing.assert_close(after, model(batch)["hand_vel"].detach(), atol=1e-6, rtol=0)
    assert not torch.allclose(after, cached)


def test_training_path_computes_what_evaluation_computes():
    """The written-out attention of training (dropout rounded to zero) equals PyTorch's fused
    kernel of evaluation, for windows of different lengths."""
    model = tiny_model()
    batch = random_batch(model, [50, 13, 80, 31, 64], [3, 7, 2, 5, 4])
    with torch.no_grad():
        ref = model(batch)["hand_vel"]
        for m in model.modules():
            if isinstance(m, Dropout):
                m.p = 0.0
            elif isinstance(getattr(m, "dropout", None), float):
                m.dropout = 1e-9  # attention takes its dropout path and drops nothing
        train = model.train()(batch)["hand_vel"]
    torch.testing.assert_close(train, ref, atol=1e-5, rtol=0)
