import numpy as np
import pytest
import torch

from popdecode.errors import UserError
from popdecode.model.vocab import Vocabulary


def test_add_keeps_existing_rows_bit_for_bit_and_pads_row_zero():
    torch.manual_seed(0)
    v = Vocabulary(dim=8, init_scale=0.02)
    rows = v.add(["a/0", "a/1"])
    assert rows.tolist() == [1, 2] and rows.dtype == np.int64
    before = v.weight.detach().clone()
    assert torch.equal(before[0], torch.zeros(8))
    assert v.add(["b/0"]).tolist() == [3]
    assert torch.equal(v.weight[:3].detach(), before)
    assert v.names == ["a/0", "a/1", "b/0"] and len(v) == 3
    assert v.index(["b/0", "a/0"]).tolist() == [3, 1]


def test_new_rows_are_normal_with_the_init_scale():
    torch.manual_seed(0)
    v = Vocabulary(dim=64, init_scale=0.02)
    v.add([str(i) for i in range(2000)])
    w = v.weight.detach()[1:]
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 5e-4


def test_duplicates_and_unknown_names_are_errors():
    v = Vocabulary(dim=4)
    v.add(["x"])
    with pytest.raises(ValueError, match="already in the vocabulary"):
        v.add(["x"])
    assert v.add(["x", "y"], exist_ok=True).tolist() == [1, 2]
    with pytest.raises(UserError, match=r"1 unit\(s\) unknown to the model, e\.g\. 'z'"):
        v.index(["x", "z"])


def test_padding_row_gets_no_gradient():
    v = Vocabulary(dim=4)
    v.add(["x"])
    v(torch.tensor([0, 1, 1])).sum().backward()
    assert torch.equal(v.weight.grad[0], torch.zeros(4)) and torch.equal(v.weight.grad[1], torch.full((4,), 2.0))


def test_mixed_rows_start_at_the_mean_of_known_rows_and_save_as_the_table_they_compute():
    torch.manual_seed(0)
    v = Vocabulary(dim=6)
    v.add(["a/0", "a/1", "a/2"])
    v.add(["new/0", "new/1"])
    known = v.weight.detach()[1:4].clone()
    mix = v.mix_rows(np.array([False, False, False, False, True, True]))
    assert v.table()[4:].detach() == pytest.approx(known.mean(0).expand(2, 6))
    with torch.no_grad():
        mix.logits.copy_(torch.tensor([[5.0, 0.0, -5.0], [0.0, 0.0, 0.0]]))
    w = torch.softmax(mix.logits.detach(), -1)
    expected = w @ known
    out = v(torch.tensor([4, 5, 1, 0]))
    assert out[:2].detach() == pytest.approx(expected)
    assert torch.equal(out[2].detach(), known[0]) and torch.equal(out[3].detach(), torch.zeros(6))
    # Gradients reach the mixing weights and nothing else.
    v.weight.requires_grad_(False)
    out[:2].sum().backward()
    assert mix.logits.grad is not None and mix.logits.grad.abs().sum() > 0
    saved = v.state_dict()
    assert list(saved) == ["weight"]
    assert saved["weight"][4:] == pytest.approx(expected) and torch.equal(saved["weight"][1:4], known)
    fresh = Vocabulary(dim=6)
    fresh.set_names(v.names)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh(torch.tensor([4, 5])), v(torch.tensor([4, 5])).detach())


def test_mixing_needs_known_rows_and_a_whole_mask():
    v = Vocabulary(dim=4)
    v.add(["x", "y"])
    with pytest.raises(ValueError, match="cover every row"):
        v.mix_rows(np.array([False, True]))
    with pytest.raises(UserError, match="no known units to mix new ones from"):
        v.mix_rows(np.array([False, True, True]))
