"""Soft Dice and BCE [A §2; T §3.5]."""
import pytest
import torch
import torch.nn.functional as F

from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss, soft_dice


def test_soft_dice_known_values():
    t = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert torch.isclose(soft_dice(t, t), torch.tensor(1.0))
    p = torch.tensor([1.0, 0.0, 1.0, 0.0])     # overlap 1, sums 2 + 2
    assert torch.isclose(soft_dice(p, t), torch.tensor((2 + 1e-3) / (4 + 1e-3)))
    assert torch.isclose(soft_dice(torch.zeros(4), torch.zeros(4)), torch.tensor(1.0))  # eps: empty vs empty


def test_occupancy_loss_is_per_volume_bce_plus_one_minus_dice():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    expected = torch.stack([F.binary_cross_entropy_with_logits(l, t) + 1 - soft_dice(torch.sigmoid(l), t)
                            for l, t in zip(logits, target)]).mean()
    assert torch.isclose(occupancy_loss(logits, target), expected)


def test_latent_regulariser_mean_squared_norm():
    z = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert torch.isclose(latent_regulariser(z), torch.tensor(13.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_the_closed_form_logit_gradient_is_autograd_of_the_occupancy_loss(dtype):
    from PatchSamplerLib.method.losses import occupancy_loss_and_logit_gradient
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(500, generator=g, dtype=torch.float64) * 3).to(dtype)
    target = (torch.rand(500, generator=g) < 0.3).double()
    value, d_logit = occupancy_loss_and_logit_gradient(logits, target)
    wide = logits.double().requires_grad_(True)
    expected = occupancy_loss(wide, target)
    expected.backward()
    assert value == pytest.approx(expected.detach().item(), rel=1e-6)
    torch.testing.assert_close(d_logit.double(), wide.grad, rtol=1e-6, atol=1e-9)
    assert d_logit.dtype == (torch.float32 if dtype == torch.bfloat16 else torch.float64)
