import torch

from popdecode.model import POYO
from popdecode.model.dropout import dropout, keep_mask, keep_probability

from model_helpers import TINY, random_batch


def test_keep_mask_has_the_requested_rate_in_every_lane_and_follows_the_seed():
    torch.manual_seed(0)
    m = keep_mask((400_000,), 0.2)
    lanes = m.view(-1, 4).float().mean(0)  # the four 16-bit lanes of each 64-bit draw
    assert abs(keep_probability(0.2) - 0.8) < 2e-5
    assert torch.all((lanes - 0.8).abs() < 4e-3), lanes
    torch.manual_seed(0)
    assert torch.equal(keep_mask((400_000,), 0.2), m)
    assert keep_mask((3, 5), 0.5, dtype=torch.float32).shape == (3, 5)


def test_dropout_keeps_the_expectation_and_zeroes_the_rest():
    torch.manual_seed(1)
    x = torch.full((1_000_000,), 2.0)
    y = dropout(x, 0.2, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], torch.tensor(2.0 / keep_probability(0.2)))
    assert abs(y.mean().item() - 2.0) < 0.01
    assert dropout(x, 0.2, training=False) is x


def test_training_path_without_effective_dropout_equals_evaluation():
    """The written-out training attention (used whenever dropout is on) against PyTorch's fused
    kernel: with a drop probability that rounds to zero, both must agree."""
    cfg = TINY.__class__(**{**TINY.to_dict(), "atn_dropout": 1e-9, "ffn_dropout": 1e-9, "lin_dropout": 1e-9})
    torch.manual_seed(0)
    model = POYO(config=cfg, readouts={"hand_vel": 2})
    model.unit_vocab.add([f"s0/{u}" for u in range(10)] + [f"s1/{u}" for u in range(10)])
    model.session_vocab.add(["s0", "s1"])
    batch = random_batch(model, [40, 25], [6, 9])
    with torch.no_grad():
        train = model.train()(batch)["hand_vel"]
        evaluation = model.eval()(batch)["hand_vel"]
    torch.testing.assert_close(train, evaluation, atol=1e-5, rtol=0)
