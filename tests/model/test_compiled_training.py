"""The compiled training path of the processor (popdecode.model.compiled) computes the same
function as the eager layers: same loss and gradients with dropout off, the same dropout
distribution with it on."""

from __future__ import annotations

import copy

import pytest
import torch

from model_helpers import random_batch, tiny_model
from popdecode.model.compiled import keep_masks
from popdecode.model.dropout import keep_probability


def _loss_and_grads(model, batch):
    pred = model(batch)["hand_vel"]
    loss = pred.pow(2).mean() + pred.sum()
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_step(compile: bool):
    eager = tiny_model().train()  # TINY has every dropout at 0
    other = copy.deepcopy(eager)
    other.compile_for_training(compile=compile)
    batch = random_batch(eager, [12, 30, 7], [3, 5, 4], seed=1)
    loss, grads = _loss_and_grads(eager, batch)
    loss2, grads2 = _loss_and_grads(other, batch)
    torch.testing.assert_close(loss2, loss, atol=1e-5, rtol=0)
    assert grads2.keys() == grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(grads2[name], g, atol=1e-5, rtol=1e-5, msg=name)


def test_processor_layer_equals_eager_layers_without_compiling():
    _assert_same_step(compile=False)


@pytest.mark.compile
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, from inside the compiler
def test_compiled_training_step_equals_eager():
    # One TorchInductor compilation of the tiny processor layer, forward and backward
    # (~20 s on 2 busy cores; `-m "not compile"` skips it).
    _assert_same_step(compile=True)


def test_keep_masks_follow_each_segments_probability():
    torch.manual_seed(0)
    sizes, probs = [200_000, 100_000, 50_000], [0.2, 0.4, 0.0]
    keep = keep_masks(sizes, probs, torch.device("cpu"))
    assert keep.dtype == torch.bool and keep.numel() == sum(sizes)
    start = 0
    for n, p in zip(sizes, probs):
        rate = keep[start : start + n].float().mean().item()
        assert abs(rate - keep_probability(p)) < 5 * (keep_probability(p) * (1 - keep_probability(p)) / n) ** 0.5 + 1e-9
        start += n


def test_dropout_on_trains_and_eval_uses_the_eager_path():
    model = tiny_model()
    for layer in model.proc_layers:  # dropout on in the processor
        layer.attn.dropout, layer.dropout.p, layer.ffn.dropout.p = 0.2, 0.4, 0.2
    model.compile_for_training(compile=False)
    batch = random_batch(model, [9, 14], [4, 2], seed=2)
    model.train()
    torch.manual_seed(0)
    _, grads = _loss_and_grads(model, batch)
    assert all(torch.isfinite(g).all() for g in grads.values())
    model.eval()
    with torch.no_grad():
        reference = model(batch)["hand_vel"]
    model.train_eagerly()
    with torch.no_grad():
        assert torch.equal(model(batch)["hand_vel"], reference)  # eval never used the compiled path
