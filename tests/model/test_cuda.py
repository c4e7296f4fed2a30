"""The model on a CUDA GPU computes what it computes on the CPU.

Skipped where torch sees no GPU (CI, the 2-core development machine); ``benchmarks/gpu.sh``
runs this file first on a lent GPU machine, before its speed figures.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from popdecode.model.dropout import keep_mask, keep_probability

from model_helpers import random_batch, tiny_model, window

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; torch sees none here")

DEVICE = "cuda"
LENGTHS, OUT_LENGTHS = [37, 5, 120], [9, 1, 14]


def _loss_and_grads(model, batch, targets):
    model.zero_grad(set_to_none=True)
    pred = model(batch)["hand_vel"]
    loss = F.mse_loss(pred.float(), targets)
    loss.backward()
    return pred.detach().cpu(), {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}


def test_forward_and_gradients_on_cuda_match_the_cpu():
    cpu = tiny_model()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    batch = random_batch(cpu, LENGTHS, OUT_LENGTHS, seed=3)
    targets = torch.randn(sum(OUT_LENGTHS), 2)
    pred_cpu, grads_cpu = _loss_and_grads(cpu, batch, targets)  # eval mode: no dropout, same function
    pred_gpu, grads_gpu = _loss_and_grads(gpu, batch.to(DEVICE), targets.to(DEVICE))
    torch.testing.assert_close(pred_gpu, pred_cpu, atol=1e-4, rtol=1e-4)
    assert grads_gpu.keys() == grads_cpu.keys()
    for name, g in grads_cpu.items():
        torch.testing.assert_close(grads_gpu[name], g, atol=1e-4, rtol=1e-3, msg=name)


def test_decode_window_on_cuda_matches_the_cpu():
    cpu = tiny_model()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    batch = random_batch(cpu, LENGTHS, OUT_LENGTHS, seed=4)
    for b in range(len(LENGTHS)):
        w = window(batch, b)
        args = dict(input_units=w.input_units, input_types=w.input_types, input_times=w.input_times,
                    session_index=int(w.session_index[0]), output_times=w.output_times)
        with torch.inference_mode():
            want = cpu.decode_window(**args)
            got = gpu.decode_window(**{k: v.to(DEVICE) if torch.is_tensor(v) else v for k, v in args.items()})
        torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)


def test_dropout_masks_on_cuda_keep_the_right_fraction():
    mask = keep_mask((4096, 1024), 0.2, DEVICE, torch.float32)
    assert mask.device.type == DEVICE
    assert abs(mask.mean().item() - keep_probability(0.2)) < 2e-3  # 4M draws: sd ~2e-4


def test_a_bf16_training_step_on_cuda_learns():
    model = tiny_model().to(DEVICE).train()
    batch = random_batch(model, LENGTHS, OUT_LENGTHS, seed=5).to(DEVICE)
    targets = torch.randn(sum(OUT_LENGTHS), 2, device=DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            pred = model(batch)["hand_vel"]
        loss = F.mse_loss(pred.float(), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]  # on the CPU: 1.13 -> 0.26
