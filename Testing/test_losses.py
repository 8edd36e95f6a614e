"""Soft Dice and BCE [A §2; T §3.5]."""
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
