import pytest
import torch

from lightning_recipe.core.tasks import check_task_argument, class_dim, infer_task


@pytest.mark.parametrize(
    "targets, outputs, expected",
    [
        (torch.tensor([0, 3, 9, 1]), torch.zeros(4, 10), "multiclass"),
        (torch.tensor([0, 1, 1, 0]), torch.zeros(4, 2), "multiclass"),  # 2-logit binary head is multiclass
        (torch.tensor([0, 1, 1, 0]), torch.zeros(4, 1), "binary"),
        (torch.tensor([0, 1, 1, 0]), torch.zeros(4), "binary"),
        (torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.zeros(4, 1), "binary"),
        (torch.tensor([[0.0], [1.0], [1.0], [0.0]]), torch.zeros(4, 1), "binary"),
        (torch.tensor([True, False, True, True]), torch.zeros(4, 1), "binary"),
        (torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]), torch.zeros(2, 3), "multilabel"),
        (torch.tensor([[0, 1, 1], [0, 0, 0]]), torch.zeros(2, 3), "multilabel"),
        (torch.tensor([151.0, 75.0, 141.0]), torch.zeros(3, 1), "regression"),
        (torch.tensor([[1.5, 2.0], [0.1, -3.0]]), torch.zeros(2, 2), "regression"),
        (torch.tensor([3, 7, 12]), torch.zeros(3, 1), "regression"),  # integer counts, one output
        (torch.randint(0, 5, (2, 6)), torch.zeros(2, 5, 6), "multiclass"),  # dense (N, C, T)
        (torch.randint(0, 5, (2, 6)), torch.zeros(2, 6, 5), "multiclass"),  # language model (N, T, V)
    ],
)
def test_infer_task(targets, outputs, expected):
    assert infer_task(targets, outputs) == expected


def test_infer_task_without_outputs():
    assert infer_task(torch.tensor([0, 3, 2])) == "multiclass"
    assert infer_task(torch.tensor([1.5, 2.5])) == "regression"
    with pytest.raises(
        ValueError, match=r"0/1 targets .* pass task='binary' or task='multiclass' or task='multilabel'"
    ):
        infer_task(torch.tensor([0, 1, 1]))


def test_infer_task_one_hot_is_ambiguous():
    one_hot = torch.eye(3)[torch.tensor([0, 2, 1, 1])]
    with pytest.raises(
        ValueError, match=r"one-hot float targets .* pass task='multiclass' or task='multilabel'"
    ):
        infer_task(one_hot, torch.zeros(4, 3))


def test_infer_task_row_mismatch_and_explicit_task():
    with pytest.raises(ValueError, match="the model's output has 3 rows but the targets have 4"):
        infer_task(torch.tensor([0, 1, 1, 0]), torch.zeros(3, 2))
    assert infer_task(torch.tensor([0, 1]), torch.zeros(2, 2), task="binary") == "binary"


def test_task_argument_errors_list_values():
    check_task_argument("auto", "X")
    with pytest.raises(
        ValueError,
        match=r"LossAtInitCheck\(task='multi'\): unknown task; pass one of 'auto', 'multiclass', 'binary', 'multilabel' or 'regression'",
    ):
        check_task_argument("multi", "LossAtInitCheck")


@pytest.mark.parametrize(
    ("targets", "outputs", "expected"),
    [
        ((4,), (4, 3), 1),
        ((2, 6), (2, 5, 6), 1),  # dense (N, C, T)
        ((2, 6), (2, 6, 5), -1),  # language model (N, T, V)
        ((2, 3, 4), (2, 5, 3, 4), 1),  # segmentation (N, C, H, W)
        ((2, 5), (2, 5, 5), 1),  # both fit: classes first, as F.cross_entropy reads them
        ((2, 7), (2, 5, 6), None),
        ((4,), (4,), None),
    ],
)
def test_class_dim_finds_the_classes_in_dense_logits(targets, outputs, expected):
    assert class_dim(torch.zeros(targets, dtype=torch.long), torch.zeros(outputs)) == expected
