"""The training loop: determinism by seed, exact resume from a checkpoint, LR schedules, bad input."""

import pytest
import torch
from torch import nn

from dstlib import train
from dstlib.data.augment import random_crop_flip


def tiny_data(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return torch.utils.data.TensorDataset(x, y)


def tiny_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 2))


def run(epochs=2, seed=0, **kwargs):
    torch.manual_seed(123)  # the model's init is the caller's business; keep it fixed here
    model = tiny_model()
    return train.fit(model, tiny_data(), epochs=epochs, batch_size=16, lr=0.1, seed=seed, device="cpu",
                     eval_data=tiny_data(32), **kwargs)


def test_same_seed_same_metrics_and_different_seed_differs():
    a, b, c = run(seed=0), run(seed=0), run(seed=1)
    assert a.history == [dict(h) for h in b.history]
    assert a.history[-1]["train_loss"] != c.history[-1]["train_loss"]
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    full = run(epochs=3)
    ckpt = tmp_path / "run.pt"

    def crash_after_epoch_2(epoch, model, engine):
        if epoch == 2:
            raise KeyboardInterrupt  # the checkpoint of epoch 1 is on disk, epoch 2's is not

    with pytest.raises(KeyboardInterrupt):
        run(epochs=3, checkpoint=ckpt, on_epoch_end=crash_after_epoch_2)
    resumed = run(epochs=3, checkpoint=ckpt, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    for p, q in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sparsity_engine_is_stepped_after_each_optimizer_step():
    calls = []

    class CountingEngine:
        def __init__(self, model, optimizer, total_steps):
            self.total_steps = total_steps

        def step(self):
            calls.append(1)

    result = run(epochs=2, sparsity=CountingEngine)
    assert len(calls) == result.steps == result.engine.total_steps == 2 * 6


def test_cosine_schedule_reaches_zero_and_step_schedule_decays():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    cosine = train.make_lr_schedule(opt, "cosine", 10)
    assert cosine.lr_lambdas[0](0) == 1.0 and cosine.lr_lambdas[0](10) == pytest.approx(0.0)
    step = train.make_lr_schedule(opt, "step", 100, milestones=(0.5, 0.75))
    assert [step.lr_lambdas[0](s) for s in (0, 50, 75)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"epochs": 0}, "epochs=0"), ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
    ({"lr_schedule": "cyclic"}, "lr_schedule='cyclic'"),
])
def test_bad_arguments_are_named(kwargs, fragment):
    args = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        train.fit(tiny_model(), tiny_data(), batch_size=8, lr=0.1, device="cpu", **args)


def test_random_crop_flip_keeps_shape_and_content_and_is_seeded():
    x = torch.rand(8, 3, 32, 32)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    no_shift = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert torch.equal(no_shift, x)
