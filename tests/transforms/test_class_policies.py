"""Class-selection policies of :func:`monai_supmix.transforms.select_classes`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_supmix.transforms import CLASS_POLICIES, select_classes


def _labels():
    label = torch.zeros(2, 1, 10, 10, dtype=torch.long)
    label[:, :, :2] = 1  # 20 %
    label[:, :, 2:3] = 2  # 10 %
    return label


def test_fixed_list_is_shared_by_every_sample():
    assert select_classes([1], _labels(), 3) == [[1], [1]]
    assert select_classes((2, 1), _labels(), 3) == [[1, 2], [1, 2]]
    assert select_classes(torch.tensor([2]), _labels(), 3) == [[2], [2]]


@pytest.mark.parametrize("generator", [None, "torch", "numpy"])
def test_random_half_is_subset_of_present_classes(generator):
    label = torch.zeros(3, 1, 6, 6, dtype=torch.long)
    label[0, 0, 0, :5] = torch.tensor([1, 2, 3, 4, 5])  # 6 classes present -> 3
    label[1, 0, 0, :2] = torch.tensor([3, 5])  # 3 present -> 2
    label[2, 0, :, :] = 4  # 1 present -> 1
    gen = {None: None, "torch": torch.Generator().manual_seed(0), "numpy": np.random.RandomState(0)}[generator]
    for _ in range(10):
        chosen = select_classes("random_half", label, 6, generator=gen)
        assert len(chosen[0]) == 3 and set(chosen[0]) <= {0, 1, 2, 3, 4, 5}
        assert len(chosen[1]) == 2 and set(chosen[1]) <= {0, 3, 5}
        assert chosen[2] == [4]
        assert all(c == sorted(set(c)) for c in chosen)


def test_random_half_of_onehot_labels_and_draws_vary():
    index = torch.arange(4).repeat(16).reshape(1, 1, 8, 8)
    onehot = torch.movedim(torch.nn.functional.one_hot(index[:, 0], 4), -1, 1).float()
    gen = torch.Generator().manual_seed(1)
    draws = {tuple(select_classes("random_half", onehot, 4, generator=gen)[0]) for _ in range(40)}
    assert all(len(d) == 2 for d in draws) and len(draws) > 1


@pytest.mark.parametrize("make", [lambda s: torch.Generator().manual_seed(s), np.random.RandomState])
@pytest.mark.parametrize("policy", ["random_half", "inverse_frequency"])
def test_random_policies_are_reproducible(make, policy):
    label = torch.randint(0, 5, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    freqs = [1000, 100, 10, 50, 5]
    runs = []
    for _ in range(2):
        gen = make(7)
        runs.append([select_classes(policy, label, 5, generator=gen, class_frequencies=freqs) for _ in range(5)])
    assert runs[0] == runs[1]


def test_rarest_from_labels_and_given_frequencies():
    label = _labels()
    assert select_classes("rarest", label, 3) == [[1, 2], [1, 2]]
    assert select_classes("rarest", label, 3, num_select=1) == [[2], [2]]
    # binary vessel data: only the vessel class
    vessel = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    vessel[..., 3, :] = 1
    assert select_classes("rarest", vessel, 2) == [[1]]
    # background / GGO / consolidation, frequencies of the labeled set override the batch
    assert select_classes("rarest", label, 3, class_frequencies=[0.90, 0.07, 0.03]) == [[1, 2], [1, 2]]
    assert select_classes("rarest", label, 3, class_frequencies=torch.tensor([5.0, 900.0, 30.0])) == [[0, 2], [0, 2]]
    assert select_classes("rarest", label, 3, class_frequencies=[5, 900, 30], num_select=1) == [[0], [0]]


def test_inverse_frequency_probabilities_and_never_empty():
    label = _labels()
    freqs = [1000.0, 100.0, 10.0]  # p = 0.01, 0.1, 1
    gen = torch.Generator().manual_seed(0)
    draws = [select_classes("inverse_frequency", label, 3, generator=gen, class_frequencies=freqs) for _ in range(300)]
    flat = [c for d in draws for sample in d for c in sample]
    assert all(2 in sample for d in draws for sample in d)  # the rarest class has probability 1
    assert all(sample for d in draws for sample in d)
    rate = np.bincount(flat, minlength=3) / 600
    assert rate[2] == 1.0 and 0.05 < rate[1] < 0.16 and rate[0] < 0.04
    # from the batch (no frequencies given): rarest present class is always drawn
    assert all(2 in s for s in select_classes("inverse_frequency", label, 3, generator=np.random.RandomState(0)))


def test_inverse_frequency_zero_frequency_classes():
    label = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    label[..., 0, 0] = 1
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        chosen = select_classes("inverse_frequency", label, 3, generator=gen)[0]
        assert 1 in chosen and 2 in chosen  # rarest present class and the absent (zero frequency) one
    assert select_classes("inverse_frequency", label, 2, class_frequencies=[0, 0]) == [[0, 1]]


def test_policy_errors():
    label = _labels()
    with pytest.raises(ValueError, match=r"unknown class policy 'rare'.*random_half.*rarest.*inverse_frequency"):
        select_classes("rare", label, 3)
    assert set(CLASS_POLICIES) == {"random_half", "rarest", "inverse_frequency"}
    with pytest.raises(ValueError, match="classes must not be empty"):
        select_classes([], label, 3)
    with pytest.raises(ValueError, match=r"indices \[3\] outside \[0, 2\]"):
        select_classes([1, 3], label, 3)
    with pytest.raises(ValueError, match=r"indices \[-1\] outside"):
        select_classes([-1], label, 3)
    with pytest.raises(ValueError, match="`class_frequencies` has 2 entries, expected num_classes=3"):
        select_classes("rarest", label, 3, class_frequencies=[1, 2])
    with pytest.raises(ValueError, match="must be non-negative"):
        select_classes("inverse_frequency", label, 3, class_frequencies=[1, -2, 3])
    with pytest.raises(ValueError, match=r"`num_select` must be in \[1, 3\], got 0"):
        select_classes("rarest", label, 3, num_select=0)
    with pytest.raises(ValueError, match="expected integer class indices"):
        select_classes("random_half", label.float(), 3)
    with pytest.raises(TypeError, match="`labels` must be a torch.Tensor"):
        select_classes("rarest", label.numpy(), 3)
