"""Each part of the training loop alone: the callbacks on a hand-made Loop, the epoch batches, the
optimisation settings."""

import math

import pytest
import torch
from torch import nn

from dstlib import tasks
from dstlib.callbacks import (
    Augmentation,
    Checkpoint,
    EpochEndHook,
    EpochSampling,
    Evaluation,
    FitResult,
    Loop,
    Perturbation,
    Record,
    Sparsity,
    Validation,
    conv_backward_flops,
)
from dstlib.optimisation import Optimisation
from dstlib.train import DistributedContext, EpochBatches


def data(n=12):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x.sum(1) > 0).long()


def make_loop(callbacks=(), num_samples=12, is_main=True):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer, schedule = Optimisation(lr=0.1).build(model, total_steps=6, steps_per_epoch=3)
    loop = Loop(model=model, task=tasks.Classification(), device=torch.device("cpu"), optimizer=optimizer,
                schedule=schedule, callbacks=list(callbacks), epochs=2, total_steps=6, num_samples=num_samples,
                shuffle=torch.Generator().manual_seed(0), seed=3, is_main=is_main)
    loop.net = model
    for callback in callbacks:
        callback.setup(loop)
    return loop


def test_sparsity_builds_the_engine_for_the_run_and_steps_it():
    built = []

    class Engine:
        def __init__(self, model, optimizer, total_steps):
            built.append((model, optimizer, total_steps))
            self.steps = 0

        def step(self):
            self.steps += 1

        def state_dict(self):
            return {"steps": self.steps}

        def load_state_dict(self, state):
            self.steps = state["steps"]

    callback = Sparsity(Engine)
    loop = make_loop([callback])
    assert built == [(loop.model, loop.optimizer, 6)] and loop.engine is callback.engine
    callback.after_step(loop)
    callback.after_step(loop)
    assert callback.state_dict() == {"steps": 2}
    callback.load_state_dict({"steps": 5})
    assert loop.engine.steps == 5


def test_augmentation_is_seeded_by_the_run_and_resumes_its_stream():
    def shift(x, generator):
        return x + torch.rand(1, generator=generator)

    batch = {"input": torch.zeros(2, 4), "target": torch.zeros(2, dtype=torch.long)}
    a, b = Augmentation(shift), Augmentation(shift)
    loop = make_loop([a, b])
    first = a.on_batch(loop, batch)
    assert torch.equal(first["input"], b.on_batch(loop, batch)["input"])  # both seeded seed + 1
    assert torch.equal(first["target"], batch["target"])  # only the first model input changes
    state = a.state_dict()
    expected = a.on_batch(loop, batch)["input"]
    b.load_state_dict(state)
    assert torch.equal(b.on_batch(loop, batch)["input"], expected)


def test_perturbation_sees_the_wrapped_model_the_batch_and_the_task():
    seen = []
    callback = Perturbation(lambda net, batch, task: seen.append((net, task)) or {**batch, "input": -batch["input"]})
    loop = make_loop([callback])
    out = callback.on_batch(loop, {"input": torch.ones(1, 4), "target": torch.zeros(1, dtype=torch.long)})
    assert seen == [(loop.net, loop.task)] and torch.equal(out["input"], -torch.ones(1, 4))


def test_record_keeps_each_samples_value_by_index_and_nan_for_unused_ones():
    callback = Record({"loss": None, "double": lambda task, outputs, batch: 2 * outputs[:, 0]})
    loop = make_loop([callback], num_samples=4)
    callback.on_epoch_start(loop)
    callback.on_batch_end(loop, torch.tensor([2, 0]), torch.tensor([[1.0], [3.0]]), {}, torch.tensor([0.5, 0.7]))
    callback.on_epoch_end(loop, {})
    result = FitResult(model=loop.model, engine=None)
    callback.on_fit_end(loop, result)
    loss, double = result.per_sample["loss"][0], result.per_sample["double"][0]
    assert loss[[0, 2]].tolist() == pytest.approx([0.7, 0.5]) and loss[[1, 3]].isnan().all()
    assert double[[0, 2]].tolist() == pytest.approx([6.0, 2.0])
    with pytest.raises(ValueError, match="record/sampler: allowed only when every batch carries sample indices"):
        callback.on_batch_end(loop, None, torch.zeros(1, 1), {}, torch.zeros(1))
    with pytest.raises(ValueError, match=r"record=\['margin'\]"):
        Record(["margin"])
    with pytest.raises(ValueError, match="allowed with tensors, a map-style dataset, or a loader"):
        make_loop([Record(["loss"])], num_samples=0)


def test_epoch_sampling_passes_the_most_recent_losses_to_its_sampler():
    class Lowest:
        seen = []

        def num_selected(self, n):
            return 2

        def select(self, epoch, losses, generator):
            self.seen.append(losses.clone())
            return torch.nan_to_num(losses, nan=0.0).argsort()[:2]

    callback = EpochSampling(Lowest())
    loop = make_loop([callback], num_samples=3)
    callback.on_epoch_start(loop)
    assert callback.select(1, loop.shuffle).tolist() == [0, 1] and Lowest.seen[0].isnan().all()
    callback.on_batch_end(loop, torch.tensor([0, 1]), None, {}, torch.tensor([5.0, -1.0]))
    callback.on_epoch_end(loop, {})
    assert sorted(callback.select(2, loop.shuffle).tolist()) == [1, 2]  # sample 2 unseen: NaN ranks as 0
    assert Lowest.seen[1].tolist()[:2] == [5.0, -1.0] and math.isnan(Lowest.seen[1][2])


def test_validation_keeps_the_best_epoch_and_restores_it():
    x, y = data()
    callback = Validation((x, y), select_by="loss")
    loop = make_loop([callback])
    rows = []
    for epoch, scale in enumerate((0.0, 2.0, -1.0), start=1):  # epoch 2 separates the classes best
        loop.epoch = epoch
        with torch.no_grad():
            loop.model.weight.copy_(scale * torch.tensor([[-1.0] * 4, [1.0] * 4]))
            loop.model.bias.zero_()
        rows.append({})
        callback.on_epoch_end(loop, rows[-1])
    losses = [row["val_loss"] for row in rows]
    assert set(rows[0]) == {"val_loss", "val_accuracy"} and min(losses) == losses[1]
    result = FitResult(model=loop.model, engine=None, best_epoch=3)
    callback.on_fit_end(loop, result)
    assert result.best_epoch == 2 and torch.all(result.model.weight[1] == 2.0)
    with pytest.raises(ValueError, match="select_by='dice'"):
        make_loop([Validation((x, y), select_by="dice")])


def test_evaluation_and_the_epoch_end_hook_add_columns():
    x, y = data()
    hook = EpochEndHook(lambda epoch, model, engine: {"epoch_seen": epoch, "engine": engine})
    loop = make_loop([Evaluation((x, y)), hook])
    loop.epoch, row = 4, {}
    for callback in loop.callbacks:
        callback.on_epoch_end(loop, row)
    assert set(row) == {"test_loss", "test_accuracy", "epoch_seen", "engine"} and row["epoch_seen"] == 4


def test_checkpoint_saves_on_the_main_process_and_resumes_the_whole_loop(tmp_path):
    path = tmp_path / "run.pt"
    record = Record(["loss"])
    loop = make_loop([record, Checkpoint(path)], num_samples=2)
    record.on_epoch_start(loop)
    record.on_batch_end(loop, torch.tensor([0, 1]), None, {}, torch.tensor([1.0, 2.0]))
    record.on_epoch_end(loop, {})
    loop.epoch, loop.steps, loop.history = 1, 3, [{"epoch": 1}]
    other = make_loop([Checkpoint(tmp_path / "other.pt")], is_main=False)
    other.callbacks[0].on_epoch_end(other, {})
    assert not (tmp_path / "other.pt").exists()  # only the main process writes
    loop.callbacks[-1].on_epoch_end(loop, {})
    fresh_record = Record(["loss"])
    resumed = make_loop([fresh_record, Checkpoint(path, resume=True)], num_samples=2)
    assert (resumed.epoch, resumed.steps, resumed.history) == (1, 3, [{"epoch": 1}])
    assert fresh_record.recorder.rows["loss"][0].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"checkpoint callbacks=\['Record', 'Checkpoint'\]: allowed only"):
        make_loop([Checkpoint(path, resume=True)])


def test_epoch_batches_split_every_global_batch_between_processes():
    x, y = data(10)
    shares = [list(EpochBatches((x, y), 4, collate=None, context=DistributedContext(rank, 2), sampling=None,
                                seed=0)(1)) for rank in (0, 1)]
    assert [size for _, _, size in shares[0]] == [4, 4, 2]
    for (index_0, batch_0, _), (index_1, batch_1, _) in zip(*shares, strict=True):
        assert len(index_0) == len(index_1) and torch.equal(batch_0[0], x[index_0])
        assert torch.equal(batch_1[1], y[index_1])
    seen = torch.cat([index for share in shares for index, _, _ in share])
    assert sorted(seen.tolist()) == list(range(10))  # every sample once per epoch
    with pytest.raises(ValueError, match="batch_size=5: allowed a multiple of the 2 processes"):
        EpochBatches((x, y), 5, collate=None, context=DistributedContext(0, 2), sampling=None, seed=0)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"lr": -1.0}, "lr=-1.0: allowed"), ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
    ({"lr_schedule": "cyclic"}, "lr_schedule='cyclic'"), ({"clip_grad_norm": 0.0}, "clip_grad_norm=0.0"),
])
def test_optimisation_refuses_bad_settings_when_made(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Optimisation(**{"lr": 0.1, **kwargs})


def test_optimisation_builds_warmup_then_schedule():
    model = nn.Linear(2, 2)
    optimizer, schedule = Optimisation(lr=1.0, optimizer="adamw", warmup_epochs=1.0).build(model, 10, 4)
    factors = [schedule.lr_lambdas[0](step) for step in range(6)]
    assert isinstance(optimizer, torch.optim.AdamW) and factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == 1.0 > factors[5]  # then cosine from the peak


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_a_convolutions_backward_counts_twice_its_forward_whatever_its_groups(groups):
    from torch.utils.flop_counter import FlopCounterMode

    conv = nn.Conv2d(16, 16, 5, padding=2, groups=groups, bias=False)
    x = torch.randn(2, 16, 9, 9, requires_grad=True)
    forward = 2 * 2 * 9 * 9 * 16 * 25 * (16 // groups)  # 2 FLOPs per multiply-add
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as m:
        conv(x).sum().backward()
    assert m.get_total_flops() == 3 * forward  # torch's own formula gives (2 + groups) x forward
