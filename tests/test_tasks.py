"""One loop, every task shape: CTC on variable-length sequences with WER, 3-D segmentation with deep
supervision and Dice, per-sample records and a per-epoch sampler that reads them, adversarial training."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dstlib import adversarial, metrics, tasks, train
from dstlib.callbacks import EpochSampling, Evaluation, Perturbation, Record, Validation
from dstlib.evaluation import evaluate
from dstlib.optimisation import Optimisation

# ---- CTC ----------------------------------------------------------------------------------------------

ALPHABET = " ab"  # id 0 is the CTC blank, 1 the space, 2 'a', 3 'b'


def decode(ids):
    return "".join(ALPHABET[i - 1] for i in ids)


class Utterances(torch.utils.data.Dataset):
    """Sequences of 2-5 symbols, each shown for 3 frames as a one-hot then one silent frame (plus noise):
    ``(features (4, T), T, tokens, S)`` items of different lengths."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            tokens = torch.randint(1, 4, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)
            frames = torch.stack([tokens, tokens, tokens, torch.zeros_like(tokens)], 1).flatten()
            features = F.one_hot(frames, 4).T.float() + 0.1 * torch.randn(4, len(frames), generator=g)
            self.items.append((features, len(frames), tokens, len(tokens)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class FrameClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 16, 3, padding=1)
        self.out = nn.Linear(16, 4)

    def forward(self, x, lengths):
        return self.out(F.relu(self.conv(x)).transpose(1, 2))  # (B, T, V)


def test_ctc_on_variable_length_batches_learns_and_reports_wer():
    from dstlib.data.speech import pad_ctc_batch

    task = tasks.CTC(decode=decode)
    data, test = Utterances(96, 0), Utterances(32, 1)
    before = evaluate(FrameClassifier(), test, task=task, collate=pad_ctc_batch, device="cpu")
    result = train.fit(FrameClassifier, data, task=task, collate=pad_ctc_batch, epochs=15, batch_size=16,
                       optim=Optimisation(lr=0.05, optimizer="adamw", weight_decay=0.0), device="cpu",
                       callbacks=[Evaluation(test), Record(["loss"])])
    after = result.history[-1]
    assert set(before) == {"loss", "wer", "cer"} and before["wer"] > 0.5
    assert after["test_wer"] < 0.1 and after["test_cer"] <= after["test_wer"] + 1e-9
    assert result.per_sample["loss"].shape == (15, 96) and not result.per_sample["loss"].isnan().any()


def test_ctc_loss_per_sample_matches_pytorch_mean_reduction():
    batch_items = [Utterances(4, 2)[i] for i in range(4)]
    from dstlib.data.speech import pad_ctc_batch

    task = tasks.CTC()
    batch = task.as_dict(pad_ctc_batch(batch_items))
    logits = torch.randn(4, batch["features"].shape[2], 4)
    expected = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), batch["targets"], batch["lengths"],
                          batch["target_lengths"], reduction="mean")
    assert task.loss(logits, batch).mean() == pytest.approx(float(expected), rel=1e-5)


# ---- 3-D segmentation with deep supervision --------------------------------------------------------------

def volumes(n, seed):
    """Cubes of 8^3 voxels; class 1 where a noisy bright blob is."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, 8, 8, 8, dtype=torch.long)
    for i in range(n):
        corner = torch.randint(0, 4, (3,), generator=g)
        labels[i, corner[0]:corner[0] + 4, corner[1]:corner[1] + 4, corner[2]:corner[2] + 4] = 1
    images = labels[:, None].float() + 0.3 * torch.randn(n, 1, 8, 8, 8, generator=g)
    return images, labels


class TwoHeads(nn.Module):
    """Full-resolution logits and a half-resolution auxiliary head (deep supervision); one head in eval."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv3d(1, 8, 3, padding=1)
        self.full = nn.Conv3d(8, 2, 1)
        self.coarse = nn.Conv3d(8, 2, 1)

    def forward(self, x):
        h = F.relu(self.body(x))
        if not self.training:
            return self.full(h)
        return [self.full(h), self.coarse(F.avg_pool3d(h, 2))]


def test_segmentation_with_deep_supervision_and_dice():
    task = tasks.DeepSupervision(tasks.Segmentation(), weights=[1.0, 0.5])
    model = TwoHeads().train()
    images, labels = volumes(4, 0)
    batch = task.as_dict((images, labels))
    outputs = model(images)
    base = tasks.Segmentation()
    expected = base.loss(outputs[0], batch) + 0.5 * base.loss(outputs[1], batch)
    assert torch.allclose(task.loss(outputs, batch), expected)
    assert outputs[1].shape[2:] == (4, 4, 4)  # the labels were resized to the auxiliary head
    result = train.fit(TwoHeads, volumes(32, 1), task=task, epochs=8, batch_size=8,
                       optim=Optimisation(lr=0.05, optimizer="adamw", weight_decay=0.0), device="cpu",
                       callbacks=[Validation(volumes(8, 2), select_by="dice")])
    dice = evaluate(result.model, volumes(8, 2), task=task, device="cpu")["dice"]
    assert dice > 0.8 and dice == pytest.approx(max(h["val_dice"] for h in result.history))


def test_dice_metric_on_a_hand_made_case():
    logits = torch.zeros(1, 2, 2, 2, 1)
    logits[0, 1, 0] = 1.0  # predicts class 1 on the first row (2 voxels)
    labels = torch.zeros(1, 2, 2, 1, dtype=torch.long)
    labels[0, 0, 0, 0] = 1  # one of them is truly class 1
    dice = metrics.Dice()
    dice.reset()
    dice.update(tasks.Segmentation(), logits, {"target": labels})
    assert dice.compute() == pytest.approx(2 * 1 / (2 + 1))


def test_sliding_window_evaluation_matches_a_whole_volume_pass_for_a_local_model():
    images, labels = volumes(2, 3)
    model = TwoHeads().eval()
    task = tasks.Segmentation()
    whole = evaluate(model, (images, labels), task=task, device="cpu")
    windowed = evaluate(model, (images, labels), task=task, device="cpu",
                              forward=tasks.sliding_window((8, 8, 8), overlap=0.0))
    assert windowed["dice"] == pytest.approx(whole["dice"])


# ---- per-sample records and a per-epoch sampler ----------------------------------------------------------

class KeepHardest:
    """Every epoch, train on the half of the samples with the largest most recent loss (unseen ones last)."""

    def __init__(self):
        self.seen = []

    def num_selected(self, num_samples):
        return num_samples // 2

    def select(self, epoch, losses, generator):
        self.seen.append(losses.clone())
        if losses.isnan().all():
            return torch.randperm(len(losses), generator=generator)[: len(losses) // 2]
        return torch.nan_to_num(losses, nan=-1.0).argsort(descending=True)[: len(losses) // 2]


def test_a_sampler_chooses_each_epoch_from_the_most_recent_losses():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 2, (64,), generator=g)
    sampler = KeepHardest()
    correct = {"correct": lambda task, outputs, batch: (outputs.argmax(1) == task.targets(batch)).float()}
    result = train.fit(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), (x, y), epochs=3, batch_size=8,
                       optim=Optimisation(lr=0.1), device="cpu", callbacks=[EpochSampling(sampler), Record(correct)])
    losses = result.per_sample["loss"]
    assert result.steps == 3 * 4 and result.samples_seen == 3 * 32
    assert sampler.seen[0].isnan().all() and len(sampler.seen[0]) == 64
    for epoch in (1, 2):  # the sampler saw each sample's loss from the last epoch that trained on it
        expected = losses[0] if epoch == 1 else torch.where(losses[1].isnan(), losses[0], losses[1])
        assert torch.equal(sampler.seen[epoch].isnan(), expected.isnan())
        assert torch.allclose(sampler.seen[epoch].nan_to_num(), expected.nan_to_num())
        chosen = ~losses[epoch].isnan()
        previous = expected.nan_to_num(-1.0)
        assert previous[chosen].min() >= previous[~chosen].max()  # the hardest half was trained on
    assert int((~result.per_sample["correct"][0].isnan()).sum()) == 32
    assert set(result.per_sample["correct"][0].nan_to_num(0.5).unique().tolist()) <= {0.0, 0.5, 1.0}


def test_recorded_losses_are_the_training_forward_passes():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 1, 8, 8, generator=g), torch.randint(0, 2, (24,), generator=g)
    result = train.fit(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), (x, y), epochs=1, batch_size=24,
                       optim=Optimisation(lr=0.1, momentum=0.0, weight_decay=0.0), device="cpu",
                       callbacks=[Record(["loss"])])
    train.seed_everything(0)
    reference = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    expected = F.cross_entropy(reference(x), y, reduction="none")  # one full batch: losses before the update
    assert torch.allclose(result.per_sample["loss"][0], expected.detach(), atol=1e-6)


# ---- adversarial training through the perturbation hook --------------------------------------------------

def test_pgd_stays_in_the_ball_raises_the_loss_and_trains_through_the_hook():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    task = tasks.Classification()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    attack = adversarial.PGD(eps=0.05, step_size=0.02, steps=5)
    batch = task.as_dict((x, y))
    attacked = attack(model, batch, task, torch.Generator().manual_seed(1))
    delta = attacked["input"] - x
    assert delta.abs().max() <= 0.05 + 1e-6 and attacked["input"].min() >= 0 and attacked["input"].max() <= 1
    assert task.loss(model(attacked["input"]), batch).mean() > task.loss(model(x), batch).mean()
    seen = []

    def perturb(net, batch, task):
        out = attack(net, batch, task)
        seen.append(float((out["input"] - batch["input"]).abs().max()))
        return out

    result = train.fit(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), (x, y), epochs=2, batch_size=16,
                       optim=Optimisation(lr=0.1), device="cpu", callbacks=[Perturbation(perturb)])
    assert len(seen) == result.steps == 8 and max(seen) <= 0.05 + 1e-6 and min(seen) > 0
    robust = adversarial.robust_accuracy(result.model, x, y, attack, task)
    clean = evaluate(result.model, (x, y))["accuracy"]
    assert 0.0 <= robust <= clean


def test_per_sample_records_from_a_dataloader_of_indexed_dict_batches():
    class Indexed(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"input": self.x[i], "target": self.y[i], "index": i}

    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(20, 1, 8, 8, generator=g), torch.randint(0, 2, (20,), generator=g)
    loader = torch.utils.data.DataLoader(Indexed(x, y), batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    result = train.fit(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), loader, epochs=2, batch_size=8,
                       optim=Optimisation(lr=0.1), device="cpu", callbacks=[Record(["loss"])])
    assert result.per_sample["loss"].shape == (2, 20) and not result.per_sample["loss"].isnan().any()
