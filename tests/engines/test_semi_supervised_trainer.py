"""Exact, small CPU tests of SemiSupervisedTrainer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from ignite.engine import Events
from monai.engines import IterationEvents, SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch.utils.data import DataLoader

from monai_supmix.engines import (DistributionAlignment, MeanTeacher, PseudoLabelLoss, SelfTrainingGate, SUFD,
                                  SemiSupervisedTrainer, loss_terms)
from monai_supmix.losses import ConfidenceWeightedCELoss
from monai_supmix.transforms import BatchPerturbation, strong_perturbation
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


def _sufd(net, dims=2, adv=0.1, **kwargs) -> SUFD:
    size = (16,) * dims
    # the tests' noise labels are pasted all over a 32² image, which leaves "mixed_masked" no patch to
    # look at: these tests see the mixed images whole (tests/engines/test_sufd.py covers the masking)
    kwargs.setdefault("input", "mixed")
    torch.manual_seed(1)
    disc = FeatureDiscriminator(dims, feature_channels(net, kwargs.get("feature_layer"), 1, size), channels=(8,), strides=(2,))
    return SUFD(disc, torch.optim.SGD(disc.parameters(), lr=0.1), weight=adv, **kwargs)


def _trainer(net, dims=2, mix="supmix", sufd=False, epochs=1, unsup=1.0, adv=0.1, sufd_kwargs=None,
             ema_decay=0.99, rampup_iterations=0, unsupervised_loss_function=None, **kwargs):
    labeled = DataLoader(_items(4, dims, size=16 if dims == 3 else 32), batch_size=2)
    unlabeled = DataLoader(_items(6, dims, labeled=False, seed=1, size=16 if dims == 3 else 32), batch_size=2)
    kwargs.setdefault("decollate", False)  # these tests read engine.state.output as one dict of terms
    return SemiSupervisedTrainer(
        device=kwargs.pop("device", "cpu"),
        max_epochs=epochs,
        train_data_loader=labeled,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        unlabeled_data_loader=unlabeled,
        num_classes=2,
        mixing=mix,
        mean_teacher=MeanTeacher(ema_decay),
        pseudo_label_loss=PseudoLabelLoss(unsupervised_loss_function, unsup, rampup_iterations),
        sufd=_sufd(net, dims, adv, **(sufd_kwargs or {})) if sufd else None,
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
    original_step = trainer.sufd.optimizer.step

    def counting_step(*args, **kwargs):
        grads_seen.append(True)
        return original_step(*args, **kwargs)

    trainer.sufd.optimizer.step = counting_step
    # the student's optimizer never holds discriminator parameters
    student_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not student_ids & {id(p) for p in disc.parameters()}
    trainer.run()
    assert len(grads_seen) == trainer.state.iteration
    assert any(not torch.equal(b, a) for b, a in zip(before, disc.parameters()))


def test_discriminator_gets_no_gradient_from_student_losses():
    """After the student's backward (adversarial term included) no gradient sits on the discriminator."""
    net = _net()
    trainer = _trainer(net, sufd=True, adv=1.0)
    disc = trainer.discriminator
    seen = []
    original = trainer.sufd.discriminator_step

    def checked_step(*args, **kwargs):  # runs right after the student's backward and step
        seen.append([p.grad for p in disc.parameters()])
        return original(*args, **kwargs)

    trainer.sufd.discriminator_step = checked_step
    trainer.run()
    assert len(seen) == trainer.state.iteration == 2
    assert float(trainer.state.output["adversarial_loss"]) > 0  # the term was there and back-propagated
    for grads in seen:
        assert all(g is None or not bool(g.abs().sum()) for g in grads)


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
@pytest.mark.parametrize("mix", ["none", "classmix", "supmix", "both", "bidirectional"])
def test_all_modes_train(mix, dims):
    """Every mode and dimension updates student, teacher and discriminator, and the loss is the documented sum."""
    net = _net(dims)
    trainer = _trainer(net, dims=dims, mix=mix, sufd=True, epochs=2, rampup_iterations=2)
    student0 = [p.detach().clone() for p in net.parameters()]
    disc0 = [p.detach().clone() for p in trainer.discriminator.parameters()]
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(loss_terms(e.state.output)))
    trainer.run()
    assert trainer.state.iteration == 4 and len(outputs) == 4
    for terms in outputs:
        expected = (terms["supervised_loss"] + terms["unsupervised_weight"] * terms["unsupervised_loss"]
                    + terms["adversarial_weight"] * terms["adversarial_loss"])
        assert terms["loss"] == pytest.approx(expected, rel=1e-5)
        assert 0.0 <= terms["discriminator_accuracy"] <= 1.0 and 0.0 <= terms["confident_fraction"] <= 1.0
    # the ramp-up over 2 iterations: no unsupervised or adversarial weight at first, full weight after
    assert outputs[0]["unsupervised_weight"] < 0.01 and outputs[-1]["unsupervised_weight"] == pytest.approx(1.0)
    assert outputs[-1]["adversarial_weight"] == pytest.approx(0.1)
    assert outputs[-1]["unsupervised_loss"] > 0 and outputs[-1]["adversarial_loss"] > 0
    changed = lambda before, module: any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))  # noqa: E731
    assert changed(student0, net) and changed(disc0, trainer.discriminator)
    # the teacher moved from the initial weights towards the student, but is not the student
    assert changed(student0, trainer.teacher) and changed([p.detach() for p in net.parameters()], trainer.teacher)


def test_amp_on_cpu_runs_the_whole_step_in_bfloat16():
    """amp=True on CPU: bfloat16 autocast through teacher, student, SUFD; float32 weights; no scaler."""
    net = _net()
    trainer = _trainer(net, mix="both", sufd=True, epochs=2, amp=True, sufd_kwargs={"feature_layer": "output"})
    assert trainer.use_amp and trainer.student_scaler is None and trainer.sufd.scaler is None
    assert "scaler" not in trainer.checkpoint_objects()
    dtypes = {}
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED,
                              lambda e: dtypes.setdefault("student", e.state.output["pred"].dtype))
    original = trainer.teacher.forward
    trainer.teacher.forward = lambda x: (lambda y: (dtypes.setdefault("teacher", y.dtype), y)[1])(original(x))
    disc_forward = trainer.discriminator.forward
    trainer.discriminator.forward = lambda x: (lambda y: (dtypes.setdefault("disc", y.dtype), y)[1])(disc_forward(x))
    before = [p.detach().clone() for p in net.parameters()]
    trainer.run()
    assert dtypes == {"teacher": torch.bfloat16, "student": torch.bfloat16, "disc": torch.bfloat16}
    terms = loss_terms(trainer.state.output)
    assert all(terms[k] == terms[k] for k in ("loss", "unsupervised_loss", "adversarial_loss", "discriminator_loss"))
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    with pytest.warns(UserWarning, match="mixed precision is used on CUDA and CPU only"):
        _trainer(_net(), device="mps", amp=True)


def test_supmix_pasted_pixels_are_confident():
    net = _net()
    trainer = _trainer(net, mix="supmix", unsupervised_loss_function=ConfidenceWeightedCELoss(0.99))
    trainer.run()
    # an untrained teacher is never 99 % sure, so every confident pixel was pasted from ground truth
    assert trainer.state.output["confident_fraction"] > 0


@pytest.mark.parametrize("discriminator_input", ["mixed", "unlabeled"])
def test_discriminator_input_selects_which_features_are_fake(discriminator_input):
    """``"unlabeled"`` shows the discriminator features of the plain (unmixed) unlabeled images."""
    net = _net()
    trainer = _trainer(net, mix="supmix", sufd=True, sufd_kwargs={"input": discriminator_input})
    for group in trainer.optimizer.param_groups:  # keep the student fixed so features can be recomputed
        group["lr"] = 0.0
    seen = []
    original = trainer.sufd.discriminator_step
    trainer.sufd.discriminator_step = lambda feat_l, feat_u, *a: (seen.append(feat_u), original(feat_l, feat_u, *a))[1]
    trainer.run()
    first_unlabeled = next(iter(trainer.unlabeled_data_loader))["image"]
    with torch.no_grad():
        net(first_unlabeled)
    plain = trainer.sufd._tap.pop()
    assert seen[0].shape == plain.shape
    if discriminator_input == "unlabeled":
        torch.testing.assert_close(seen[0], plain)
    else:  # the mixed images carry pasted ground-truth pixels
        assert not torch.allclose(seen[0], plain)


def test_output_space_sufd_sees_the_softmax():
    net = _net()
    trainer = _trainer(net, mix="classmix", sufd=True, sufd_kwargs={"feature_layer": "output"})
    seen = []
    original = trainer.sufd.discriminator_step
    trainer.sufd.discriminator_step = lambda feat_l, feat_u, *a: (seen.append(feat_l), original(feat_l, feat_u, *a))[1]
    trainer.run()
    assert seen[0].shape[1] == 2  # the classes
    torch.testing.assert_close(seen[0].sum(1), torch.ones_like(seen[0][:, 0]))


def test_sufd_waits_for_its_warmup():
    trainer = _trainer(_net(), sufd=True, epochs=2, sufd_kwargs={"warmup_iterations": 2})
    accuracies = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: accuracies.append(e.state.output["discriminator_accuracy"]))
    trainer.run()
    assert [a != a for a in accuracies] == [True, True, False, False]  # NaN (inactive) for the first two


def test_strong_view_perturbs_only_the_students_mixed_input():
    """The teacher sees the weak view, the student the perturbed one; same pseudo-labels either way."""
    net = _net()
    perturb = BatchPerturbation(strong_perturbation("ct", strength=2.0), seed=0)
    trainer = _trainer(net, mix="none", student_transform=perturb)
    teacher_inputs, student_inputs = [], []
    trainer.teacher.register_forward_pre_hook(lambda m, a: teacher_inputs.append(a[0].clone()))
    net.register_forward_pre_hook(lambda m, a: student_inputs.append(a[0].clone()))
    trainer.run()
    weak = teacher_inputs[0]
    student_u = student_inputs[0][2:]  # after the 2 labeled images
    assert weak.shape == student_u.shape and not torch.allclose(weak, student_u)
    # re-seeded from (seed, rank, stream, iteration): the same draw again
    perturb.set_random_state(seed=trainer._stream_seed(1, 1))
    torch.testing.assert_close(perturb(weak), student_u)


def test_random_streams_differ_by_rank_stream_and_iteration(monkeypatch):
    from monai_supmix.engines import semi_supervised_trainer as module

    trainer = _trainer(_net())
    seeds = {(r, s, i): None for r in (0, 1) for s in (0, 1) for i in (1, 2)}
    for r, s, i in seeds:
        monkeypatch.setattr(module, "rank", lambda r=r: r)
        seeds[(r, s, i)] = trainer._stream_seed(s, i)
        assert trainer._stream_seed(s, i) == seeds[(r, s, i)]  # reproducible (a resume draws the same)
    assert len(set(seeds.values())) == len(seeds)
    monkeypatch.setattr(module, "rank", lambda: 1)
    rank1 = torch.rand(4, generator=trainer._generator(3))
    monkeypatch.setattr(module, "rank", lambda: 0)
    assert not torch.equal(rank1, torch.rand(4, generator=trainer._generator(3)))


def test_supervised_configuration_skips_the_unlabeled_branch():
    net = _net()
    trainer = _trainer(net, mix="none", unsup=0.0)
    trainer._next_unlabeled = lambda: (_ for _ in ()).throw(AssertionError("unlabeled batch read"))
    trainer.run()
    assert trainer.state.iteration == 2


def test_resume_continues_identically(tmp_path):
    ref = _net()
    ref_trainer = _trainer(ref, sufd=True, epochs=4, rampup_iterations=3)
    ref_trainer.run()

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
    for a, b in zip(resumed.teacher.parameters(), ref_trainer.teacher.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(resumed.discriminator.parameters(), ref_trainer.discriminator.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fresh_run_replaces_an_earlier_runs_checkpoints(tmp_path, caplog):
    # an earlier, longer run left checkpoint_epoch=30.pt: a fresh run must neither keep it
    # (a later resume would continue the wrong run) nor fail when rotating its own files
    (tmp_path / "checkpoint_epoch=30.pt").write_bytes(b"earlier run")
    trainer = _trainer(_net(), mix="none", epochs=3)
    with caplog.at_level("WARNING"):
        attach_resumable_checkpoints(trainer, str(tmp_path))
    assert "checkpoint_epoch=30.pt" in caplog.text and "resume=True" in caplog.text
    trainer.run()
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == ["checkpoint_epoch=3.pt"]


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
    args = ("cpu", 1, DataLoader(_items(2)), net, torch.optim.SGD(net.parameters(), 0.1), DiceCELoss(),
            DataLoader(_items(2, labeled=False)), 2)
    for name in ("sufd", "mean_teacher", "pseudo_label_loss"):
        with pytest.raises(TypeError, match=f"{name} must be a monai_supmix.engines"):
            SemiSupervisedTrainer(*args, **{name: "yes"})
    with pytest.raises(ValueError, match="unsupervised_weight must be"):
        PseudoLabelLoss(weight=-1.0)
    with pytest.raises(ValueError, match="rampup_schedule must be one of"):
        PseudoLabelLoss(rampup_schedule="cosine")
    with pytest.raises(ValueError, match="ema_decay must be in"):
        MeanTeacher(1.0)
    with pytest.raises(ValueError, match="unlabeled_data_loader is empty"):
        SemiSupervisedTrainer(*args[:6], DataLoader([]), 2)


def test_constructor_takes_components_and_forwards_monai_arguments():
    """At most 25 parameters of its own; MONAI's (epoch_length, decollate, ...) pass through with MONAI's defaults."""
    import inspect

    from monai.engines import SupervisedTrainer

    own = inspect.signature(SemiSupervisedTrainer.__init__).parameters
    assert len(own) - 1 <= 25
    trainer = _trainer(_net(), epoch_length=3, decollate=True)
    assert trainer.state.epoch_length == 3
    assert inspect.signature(SupervisedTrainer.__init__).parameters["decollate"].default is True
    trainer.run()  # MONAI's default decollate (True): the output becomes one dict per item, terms replicated
    assert trainer.state.iteration == 3
    assert isinstance(trainer.state.output, list) and "supervised_loss" in loss_terms(trainer.state.output)
    undecollated = _trainer(_net(), epoch_length=1, decollate=False)
    undecollated.run()
    assert isinstance(undecollated.state.output, dict)


def test_tracking_handler_gets_the_loss_not_a_tuple():
    """`--tracking mlflow` installs from_engine(["loss"], first=True); on this trainer's dict output
    that gives a 1-tuple, which the trainer unwraps for MLFlowHandler (no mlflow needed here)."""
    from monai.handlers import MLFlowHandler as MonaiMLFlowHandler
    from monai.handlers import from_engine

    logged = []

    class MLFlowHandler(MonaiMLFlowHandler):  # MONAI's class, without the mlflow run it would start
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


def test_prepare_batch_extra_arguments_reach_the_networks():
    """As in SupervisedTrainer, the (args, kwargs) a prepare_batch returns are passed to every network call."""
    seen = []

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x, scale=1.0):
            seen.append(scale)
            return self.net(x) * scale

    def prepare_batch(batchdata, device=None, non_blocking=False, **kwargs):
        return batchdata["image"].to(device), batchdata["label"].to(device), (), {"scale": 0.5}

    trainer = _trainer(Scaled(), prepare_batch=prepare_batch)
    trainer.run()
    assert seen and all(s == 0.5 for s in seen)  # student and teacher calls alike


def test_feature_perturbation_acts_on_the_mixed_rows_of_the_students_pass_only():
    """The labeled rows of the student's pass are those of an unperturbed pass; the teacher carries no hook."""
    from monai_supmix.engines import FeaturePerturbation

    net = _net()
    perturbation = FeaturePerturbation(0.5)
    trainer = _trainer(net, mix="classmix", feature_perturbation=perturbation)
    layer = dict(trainer.teacher.named_modules())[perturbation.layer]
    assert not layer._forward_hooks  # the teacher was copied before the hook was attached
    seen = []
    original = trainer._student_pass

    def recording(parts, sufd):
        logits, features = original(parts, sufd)
        with torch.no_grad():
            perturbation._rows = None
            seen.append((logits, [net(p) for p in parts]))
        return logits, features

    trainer._student_pass = recording
    trainer.run()
    (perturbed_l, perturbed_u), (clean_l, clean_u) = seen[0]
    torch.testing.assert_close(perturbed_l.detach(), clean_l, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(perturbed_u.detach(), clean_u, atol=1e-3)
    with pytest.raises(TypeError, match="feature_perturbation must be a monai_supmix.engines.FeaturePerturbation"):
        _trainer(_net(), feature_perturbation=0.5)


def test_distribution_alignment_rescales_the_teachers_pseudo_labels_and_is_checkpointed():
    seen = []

    class Recording(DistributionAlignment):
        def __call__(self, probs, prior, running):
            seen.append(torch.as_tensor(prior).clone())
            return super().__call__(probs, prior, running)

    trainer = _trainer(_net(), distribution_alignment=Recording(0.5))
    trainer.run()
    assert len(seen) == trainer.state.iteration == 2
    # the prior is the labeled class counts seen so far; the running mean is kept in the state
    assert seen[-1].sum() == 2 * 2 * 32 * 32
    assert len(trainer.state.teacher_class_mean) == 2 and "teacher_class_mean" in trainer.state_dict_user_keys
    assert "teacher_class_mean" not in _trainer(_net()).state_dict_user_keys  # older checkpoints still load
    with pytest.raises(TypeError, match="distribution_alignment must be a monai_supmix.engines.DistributionAlignment"):
        _trainer(_net(), distribution_alignment=object())


def test_supmix_pasted_pixels_stay_out_of_the_class_adaptive_status():
    """The trainer hands the loss SupMix's complement as the teacher's pixels; a 3-argument loss never sees it."""
    seen = []

    class Spy(ConfidenceWeightedCELoss):
        def forward(self, logits, target, confidence, status_mask=None):
            seen.append((confidence.detach().clone(), status_mask))
            return super().forward(logits, target, confidence, status_mask)

    _trainer(_net(), mix="supmix", unsupervised_loss_function=Spy(0.9, class_adaptive=True)).run()
    assert seen and all(mask is not None and mask.dtype == torch.bool for _, mask in seen)
    for confidence, mask in seen:
        assert mask.shape == confidence.shape and not mask.all()  # something was pasted
        assert bool((confidence[~mask] == 1).all())  # the pasted ground truth, confidence 1
    calls = []
    _trainer(_net(), mix="supmix", unsupervised_loss_function=lambda lo, t, c: calls.append(1) or lo.sum() * 0).run()
    assert calls


def test_self_training_gate_holds_the_unsupervised_terms_at_zero_until_it_opens():
    weights = []
    closed = _trainer(_net(), epochs=2, self_training_gate=SelfTrainingGate(1.0))  # an untrained net never gets there
    closed.add_event_handler(Events.ITERATION_COMPLETED, lambda e: weights.append(e.state.output["unsupervised_weight"]))
    closed.run()
    assert weights == [0.0] * 4 and closed.state.self_training_start is None
    assert len(closed.state.self_training_dice) == 1
    assert {"self_training_dice", "self_training_start"} <= set(closed.state_dict_user_keys)
    assert "self_training_start" not in _trainer(_net()).state_dict_user_keys  # older checkpoints still load

    class OpensAtSecond(SelfTrainingGate):
        calls = 0

        def __call__(self, logits, target, running):
            OpensAtSecond.calls += 1
            return [0.9], OpensAtSecond.calls >= 2

    weights.clear()
    gated = _trainer(_net(), epochs=2, self_training_gate=OpensAtSecond(), rampup_iterations=2)
    gated.add_event_handler(Events.ITERATION_COMPLETED, lambda e: weights.append(e.state.output["unsupervised_weight"]))
    gated.run()
    # closed at iteration 1, opened at 2 (0-based 1): the ramp restarts there, and the gate is not asked again
    assert gated.state.self_training_start == 1 and OpensAtSecond.calls == 2
    assert weights[0] == 0.0 and weights[1:] == pytest.approx([math.exp(-5.0), math.exp(-1.25), 1.0])
    with pytest.raises(TypeError, match="self_training_gate must be a monai_supmix.engines.SelfTrainingGate"):
        _trainer(_net(), self_training_gate=0.5)
