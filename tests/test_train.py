"""The training loop on classification: determinism by seed, seeding before the model is built, exact resume,
LR schedules, validation with model selection, the global batch under torchrun, bad input."""

import pytest
import torch
from torch import nn

from dstlib import train
from dstlib.callbacks import EpochEndHook, Evaluation, Record, Sparsity, Validation
from dstlib.data.augment import random_crop_flip
from dstlib.evaluation import evaluate
from dstlib.optimisation import Optimisation, make_lr_schedule


def tiny_data(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return torch.utils.data.TensorDataset(x, y)


def tiny_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 2))


SGD = Optimisation(lr=0.1)


def run(epochs=2, seed=0, callbacks=(), **kwargs):
    torch.manual_seed(123)  # the model's init is the caller's business; keep it fixed here
    model = tiny_model()
    return train.fit(model, tiny_data(), epochs=epochs, batch_size=16, optim=SGD, seed=seed, device="cpu",
                     callbacks=[*callbacks, Evaluation(tiny_data(32))], **kwargs)


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
        run(epochs=3, checkpoint=ckpt, callbacks=[EpochEndHook(crash_after_epoch_2)])
    resumed = run(epochs=3, checkpoint=ckpt, resume=True, callbacks=[EpochEndHook(lambda *args: None)])
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

    result = run(epochs=2, callbacks=[Sparsity(CountingEngine)])
    assert len(calls) == result.steps == result.engine.total_steps == 2 * 6


def test_cosine_schedule_reaches_zero_and_step_schedule_decays():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    cosine = make_lr_schedule(opt, "cosine", 10)
    assert cosine.lr_lambdas[0](0) == 1.0 and cosine.lr_lambdas[0](10) == pytest.approx(0.0)
    step = make_lr_schedule(opt, "step", 100, milestones=(0.5, 0.75))
    assert [step.lr_lambdas[0](s) for s in (0, 50, 75)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"epochs": 0}, "epochs=0: allowed an integer >= 1"), ({"batch_size": 0}, "batch_size=0: allowed"),
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs': allowed"), ({"lr_schedule": "cyclic"}, "lr_schedule='cyclic'"),
    ({"lr": 0.0}, "lr=0.0: allowed"), ({"select_by": "accuracy"}, "select_by='accuracy'"),
    ({"record": ["margin"]}, "record=\\['margin'\\]"),
])
def test_bad_arguments_are_named(kwargs, fragment):
    """Each bad setting raises before the first step, naming itself, wherever it is set."""
    def fit(epochs=1, batch_size=8, optimizer="sgd", lr_schedule="cosine", lr=0.1, select_by=None, record=("loss",)):
        optim = Optimisation(lr=lr, optimizer=optimizer, lr_schedule=lr_schedule)
        callbacks = [Record(record), Validation(tiny_data(8), select_by=select_by, metrics={})]
        return train.fit(tiny_model(), tiny_data(), epochs=epochs, batch_size=batch_size, optim=optim,
                         callbacks=callbacks, device="cpu")

    with pytest.raises(ValueError, match=fragment):
        fit(**kwargs)


def test_random_crop_flip_keeps_shape_and_content_and_is_seeded():
    x = torch.rand(8, 3, 32, 32)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    no_shift = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert torch.equal(no_shift, x)


def test_a_model_factory_is_built_after_seeding():
    def factory():
        return tiny_model()

    torch.manual_seed(999)  # whatever ran before must not matter
    a = train.fit(factory, tiny_data(), epochs=1, batch_size=16, optim=SGD, seed=3, device="cpu")
    torch.randn(100)
    b = train.fit(factory, tiny_data(), epochs=1, batch_size=16, optim=SGD, seed=3, device="cpu")
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_tensors_a_dataset_and_a_dataloader_train_the_same_way():
    data = tiny_data()
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=False)
    a = train.fit(tiny_model, data, epochs=1, batch_size=16, optim=SGD, device="cpu", callbacks=[Evaluation(data)])
    b = train.fit(tiny_model, loader, epochs=1, batch_size=16, optim=SGD, device="cpu", callbacks=[Evaluation(loader)])
    assert a.steps == b.steps == 6 and b.history[-1]["test_accuracy"] >= 0.0
    assert evaluate(b.model, loader)["accuracy"] == pytest.approx(evaluate(b.model, data)["accuracy"])


def test_top_k_accuracy_and_any_per_sample_metric():
    from dstlib import metrics

    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]])
    targets = torch.tensor([1, 0, 0])
    model = nn.Sequential()  # identity: the "inputs" are the logits
    model.register_buffer("anchor", torch.zeros(1))
    model.forward = lambda x: x
    result = evaluate(model, (logits, targets), metrics={
        "top1": metrics.Accuracy(), "top2": metrics.Accuracy(k=2),
        "max_logit": metrics.Mean(lambda task, outputs, batch: outputs.max(1).values)}, device="cpu")
    assert result["top1"] == pytest.approx(0.0) and result["top2"] == pytest.approx(2 / 3)
    assert result["max_logit"] == pytest.approx(3.0)


def test_validation_selects_and_restores_the_best_epoch():
    val = tiny_data(32)
    scores = []

    def remember(epoch, model, engine):
        scores.append(evaluate(model, val)["loss"])
        return {"state": {k: v.clone() for k, v in model.state_dict().items()}}

    result = run(epochs=4, callbacks=[Validation(val, select_by="loss"), EpochEndHook(remember)])
    best = min(range(4), key=lambda i: result.history[i]["val_loss"])
    assert result.best_epoch == best + 1
    assert [h["val_loss"] for h in result.history] == pytest.approx(scores)
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, result.history[best]["state"][key])


def test_global_batch_is_split_between_processes(tmp_path):
    """Under torchrun (gloo, 2 processes) the loss curve and weights match a single process."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("fit_worker.py")
    single = tmp_path / "single.json"
    done = subprocess.run([sys.executable, str(worker), str(single)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    double = tmp_path / "double.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(worker), str(double)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a, b = json.loads(single.read_text()), json.loads(double.read_text())
    assert b["world_size"] == 2 and a["steps"] == b["steps"]
    assert b["losses"] == pytest.approx(a["losses"], rel=1e-4)
    assert b["weights"] == pytest.approx(a["weights"], rel=1e-3, abs=1e-5)
    assert b["sample_losses"] == pytest.approx(a["sample_losses"], rel=1e-4)


def test_batch_size_must_divide_between_processes(monkeypatch):
    monkeypatch.setattr(train, "distributed_context", lambda device=None: train.DistributedContext(0, 3))
    with pytest.raises(ValueError, match="batch_size=16: allowed a multiple of the 3 processes"):
        train.fit(tiny_model(), tiny_data(), epochs=1, batch_size=16, optim=SGD, device="cpu")
