"""Exact, small CPU tests of SemiSupervisedTrainer."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch.utils.data import DataLoader

from monai_supmix.engines import SemiSupervisedTrainer, loss_terms
from monai_supmix.handlers import attach_resumable_checkpoints
from monai_supmix.networks import FeatureDiscriminator, feature_channels


def _items(n: int, dims: int = 2, labeled: bool = True, seed: int = 0, size: int = 32) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        image = torch.rand((1,) + (size,) * dims, generator=gen)
        item = {"image": image}
        if labeled:
            item["label"] = (image > 0.7).long()
        items.append(item)
    return items


def _net(dims: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(dims, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)


def _trainer(net, dims=2, mix="supmix", sufd=False, epochs=1, unsup=1.0, adv=0.1, **kwargs):
    labeled = DataLoader(_items(4, dims, size=16 if dims == 3 else 32), batch_size=2)
    unlabeled = DataLoader(_items(6, dims, labeled=False, seed=1, size=16 if dims == 3 else 32), batch_size=2)
    disc = disc_opt = None
    if sufd:
        size = (16,) * dims
        torch.manual_seed(1)
        disc = FeatureDiscriminator(dims, feature_channels(net, None, 1, size), channels=(8,), strides=(2,))
        disc_opt = torch.optim.SGD(disc.parameters(), lr=0.1)
    return SemiSupervisedTrainer(
        device="cpu",
        max_epochs=epochs,
        train_data_loader=labeled,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        unlabeled_data_loader=unlabeled,
        num_classes=2,
        mix=mix,
        unsupervised_weight=unsup,
        discriminator=disc,
        discriminator_optimizer=disc_opt,
        adversarial_weight=adv,
        **kwargs,
    )


def test_matches_supervised_trainer_when_unsupervised_parts_are_off():
    net_a, net_b = _net(), _net()
    semi = _trainer(net_a, mix="none", sufd=False, unsup=0.0)
    labeled = DataLoader(_items(4), batch_size=2)
    sup = SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=labeled,
        network=net_b,
        optimizer=torch.optim.SGD(net_b.parameters(), lr=0.1),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
    )
    semi.run()
    sup.run()
    for p_a, p_b in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(p_a, p_b, rtol=1e-5, atol=1e-6)


def test_teacher_follows_ema_formula():
    net = _net()
    trainer = _trainer(net, mix="supmix", ema_decay=0.9)
    expected = copy.deepcopy(net)
    snapshots = []

    @trainer.on(__import__("ignite.engine", fromlist=["Events"]).Events.ITERATION_COMPLETED)
    def _snap(engine):
        snapshots.append([p.detach().clone() for p in net.parameters()])

    trainer.run()
    assert len(snapshots) == 2
    ema = [p.detach().clone() for p in expected.parameters()]
    for student in snapshots:
        ema = [0.9 * e + 0.1 * s for e, s in zip(ema, student)]
    for e, t in zip(ema, trainer.teacher.parameters()):
        torch.testing.assert_close(t, e, rtol=1e-5, atol=1e-6)


def test_discriminator_only_changes_through_its_optimizer():
    net = _net()
    trainer = _trainer(net, sufd=True)
    disc = trainer.discriminator
    before = [p.detach().clone() for p in disc.parameters()]
    grads_seen = []
    original_step = trainer.discriminator_optimizer.step

    def counting_step(*args, **kwargs):
        grads_seen.append(True)
        return original_step(*args, **kwargs)

    trainer.discriminator_optimizer.step = counting_step
    # the student's optimizer never holds discriminator parameters
    student_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not student_ids & {id(p) for p in disc.parameters()}
    trainer.run()
    assert len(grads_seen) == trainer.state.iteration
    assert any(not torch.equal(b, a) for b, a in zip(before, disc.parameters()))


def test_discriminator_gets_no_gradient_from_student_losses():
    net = _net()
    trainer = _trainer(net, sufd=True)
    trainer.discriminator_optimizer.step = lambda *a, **k: None  # freeze the discriminator's own update
    trainer.discriminator_optimizer.zero_grad = lambda *a, **k: None
    before = [p.detach().clone() for p in trainer.discriminator.parameters()]
    trainer.run()
    for b, a in zip(before, trainer.discriminator.parameters()):
        assert torch.equal(b, a)


@pytest.mark.parametrize("sufd", [False, True])
def test_adversarial_term_changes_student_only_with_sufd(sufd):
    """With the unsupervised loss off, the student's update differs from a no-SUFD run only when SUFD is on."""
    net_ref, net = _net(), _net()
    _trainer(net_ref, mix="none", sufd=False, unsup=0.0).run()
    trainer = _trainer(net, mix="none", sufd=sufd, unsup=0.0, adv=1.0)
    trainer.run()
    diff = max(float((a - b).abs().max()) for a, b in zip(net.parameters(), net_ref.parameters()))
    if sufd:
        assert diff > 1e-6
        assert float(trainer.state.output["adversarial_loss"]) > 0
    else:
        assert diff < 1e-6
        assert float(trainer.state.output["adversarial_loss"]) == 0.0


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("mix", ["none", "classmix", "supmix", "both"])
def test_all_modes_train(mix, dims):
    net = _net(dims)
    trainer = _trainer(net, dims=dims, mix=mix, sufd=True, epochs=2, rampup_iterations=2)
    trainer.run()
    assert trainer.state.iteration == 4
    terms = loss_terms(trainer.state.output)
    for key in ("loss", "supervised_loss", "unsupervised_loss", "adversarial_loss", "discriminator_loss"):
        assert key in terms and terms[key] == terms[key]
    assert 0.0 <= terms["discriminator_accuracy"] <= 1.0
    assert 0.0 <= terms["confident_fraction"] <= 1.0


def test_supmix_pasted_pixels_are_confident():
    net = _net()
    trainer = _trainer(net, mix="supmix", confidence_threshold=0.99)
    trainer.run()
    # an untrained teacher is never 99 % sure, so every confident pixel was pasted from ground truth
    assert trainer.state.output["confident_fraction"] > 0


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_supmix_prob_decides_whether_to_paste(prob):
    trainer = _trainer(_net(), mix="supmix", supmix_prob=prob)
    trainer.state.iteration = 1
    labeled = next(iter(trainer.data_loader))
    images_u = torch.rand(2, 1, 32, 32)
    pseudo = torch.zeros(2, 1, 32, 32, dtype=torch.long)
    confidence = torch.zeros(2, 1, 32, 32)
    mixed, label, conf = trainer._mix(
        images_u, pseudo, confidence, labeled["image"], labeled["label"], torch.tensor([10.0, 1.0])
    )
    if prob == 0.0:
        assert torch.equal(mixed, images_u) and torch.equal(label, pseudo) and torch.equal(conf, confidence)
    else:  # each image got ground-truth foreground pixels, with confidence 1
        assert all(int(label[i].sum()) > 0 for i in range(2))
        assert torch.equal(conf.bool(), label.bool()) and not torch.equal(mixed, images_u)


@pytest.mark.parametrize("discriminator_input", ["mixed", "unlabeled"])
def test_discriminator_input_selects_which_features_are_fake(discriminator_input):
    """``"unlabeled"`` shows the discriminator features of the plain (unmixed) unlabeled images."""
    net = _net()
    trainer = _trainer(net, mix="supmix", sufd=True, discriminator_input=discriminator_input)
    for group in trainer.optimizer.param_groups:  # keep the student fixed so features can be recomputed
        group["lr"] = 0.0
    seen = []
    original = trainer._discriminator_step
    trainer._discriminator_step = lambda feat_l, feat_u, autocast: (seen.append(feat_u), original(feat_l, feat_u, autocast))
    trainer.run()
    first_unlabeled = next(iter(trainer.unlabeled_data_loader))["image"]
    with torch.no_grad():
        net(first_unlabeled)
    plain = trainer.feature_tap.pop()
    assert seen[0].shape == plain.shape
    if discriminator_input == "unlabeled":
        torch.testing.assert_close(seen[0], plain)
    else:  # the mixed images carry pasted ground-truth pixels
        assert not torch.allclose(seen[0], plain)


def test_resume_continues_identically(tmp_path):
    ref = _net()
    _trainer(ref, sufd=True, epochs=4, rampup_iterations=3).run()

    first = _net()
    trainer = _trainer(first, sufd=True, epochs=2, rampup_iterations=3)
    attach_resumable_checkpoints(trainer, str(tmp_path))
    trainer.run()

    resumed_net = _net()
    resumed = _trainer(resumed_net, sufd=True, epochs=4, rampup_iterations=3)
    assert attach_resumable_checkpoints(resumed, str(tmp_path), resume=True) is not None
    resumed.run()
    assert resumed.state.iteration == 8
    for a, b in zip(resumed_net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(resumed.teacher.parameters(), ref.parameters()):
        assert a.shape == b.shape


def test_nonfinite_loss_stops_without_touching_weights():
    net = _net()
    trainer = _trainer(net, mix="none")
    before = [p.detach().clone() for p in net.parameters()]
    trainer.loss_function = lambda pred, target: pred.sum() * float("nan")
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        trainer.run()
    for b, a in zip(before, net.parameters()):
        assert torch.equal(b, a)


def test_nonfinite_loss_can_be_skipped():
    net = _net()
    trainer = _trainer(net, mix="none", on_nonfinite="skip")
    before = [p.detach().clone() for p in net.parameters()]
    trainer.loss_function = lambda pred, target: pred.sum() * float("nan")
    with pytest.warns(UserWarning, match="Skipping this update"):
        trainer.run()
    for b, a in zip(before, net.parameters()):
        assert torch.equal(b, a)


def test_bad_arguments():
    net = _net()
    with pytest.raises(ValueError, match="mix must be one of"):
        _trainer(net, mix="cutmix")
    with pytest.raises(ValueError, match="discriminator_input must be one of"):
        _trainer(net, discriminator_input="labeled")
    with pytest.raises(ValueError, match="supmix_prob must be in"):
        _trainer(net, supmix_prob=1.5)
    with pytest.raises(ValueError, match="unlabeled_data_loader is empty"):
        SemiSupervisedTrainer(
            "cpu", 1, DataLoader(_items(2)), net, torch.optim.SGD(net.parameters(), 0.1), DiceCELoss(), DataLoader([]), 2
        )
    with pytest.raises(ValueError, match="discriminator_optimizer is required"):
        SemiSupervisedTrainer(
            "cpu",
            1,
            DataLoader(_items(2)),
            net,
            torch.optim.SGD(net.parameters(), 0.1),
            DiceCELoss(),
            DataLoader(_items(2, labeled=False)),
            2,
            discriminator=FeatureDiscriminator(2, 8),
        )


def test_discriminator_collapse_warning():
    net = _net()
    trainer = _trainer(net, sufd=True, discriminator_collapse_patience=1)
    with pytest.warns(UserWarning, match="SUFD discriminator accuracy"):
        trainer._check_collapse(1.0)


def test_tracking_handler_gets_the_loss_not_a_tuple():
    """`--tracking mlflow` installs from_engine(["loss"], first=True); on this trainer's dict output
    that gives a 1-tuple, which the trainer unwraps for MLFlowHandler (no mlflow needed here)."""
    from monai.handlers import from_engine

    logged = []

    class MLFlowHandler:  # same class name as monai.handlers.MLFlowHandler, what the trainer checks
        def __init__(self):
            self.output_transform = from_engine(["loss"], first=True)

        def attach(self, engine):
            engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: logged.append(self.output_transform(e.state.output)))

    torch.manual_seed(0)
    trainer = _trainer(_net(), train_handlers=[MLFlowHandler()])
    trainer.run()
    assert len(logged) == trainer.state.iteration == 2
    assert all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in logged)
    assert float(logged[-1]) == pytest.approx(float(trainer.state.output["loss"]))
