from collections import namedtuple

import pytest
import torch

from lightning_recipe.core.batches import (
    batch_size_of,
    first_tensor,
    map_tensors,
    split_batch,
    validate_key_spec,
)

X = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize(
    "batch, in_key, t_key",
    [
        ((X, Y), 0, 1),
        ([X, Y], 0, 1),
        ((X, Y, torch.ones(4)), 0, 1),
        ({"x": X, "y": Y}, "x", "y"),
        ({"image": X, "label": Y}, "image", "label"),
        ({"Inputs": X, "Targets": Y}, "Inputs", "Targets"),
        ({"features": X, "labels": Y, "meta": torch.zeros(4)}, "features", "labels"),
    ],
)
def test_split_batch_infers_layouts(batch, in_key, t_key):
    parts = split_batch(batch)
    assert parts.inputs is X
    assert torch.equal(parts.targets, Y)
    assert (parts.input_key, parts.target_key) == (in_key, t_key)


def test_split_batch_plain_tensor_has_no_targets():
    parts = split_batch(X)
    assert parts.inputs is X and parts.targets is None


def test_split_batch_single_unknown_tensor_key_is_the_input():
    parts = split_batch({"pixels": X, "label": Y})
    assert parts.inputs is X and parts.input_key == "pixels"


def test_split_batch_overrides_by_key_position_and_callable():
    batch = {"img": X, "lbl": Y}
    assert split_batch(batch, input_key="img", target_key="lbl").targets is Y
    assert split_batch((Y, X), input_key=1, target_key=0).inputs is X
    parts = split_batch(batch, input_key=lambda b: b["img"] * 2, target_key=lambda b: b["lbl"])
    assert torch.equal(parts.inputs, X * 2) and parts.input_key == "callable"


def test_split_batch_targets_from_python_list_become_tensor():
    parts = split_batch((X, [0, 1, 1, 0]))
    assert torch.equal(parts.targets, torch.tensor([0, 1, 1, 0]))


def test_split_batch_missing_targets_names_target_key():
    with pytest.raises(
        ValueError,
        match=r"found no targets in a dict batch with keys \['img', 'pixels'\]; pass `target_key=`",
    ):
        split_batch({"img": X, "pixels": X}, input_key="img", require_targets=True)
    with pytest.raises(ValueError, match="found no targets in a batch of type Tensor; pass `target_key=`"):
        split_batch(X, require_targets=True)


def test_split_batch_ambiguous_inputs_name_input_key():
    with pytest.raises(
        ValueError, match=r"found no inputs in a dict batch with keys \['a', 'b'\]; pass `input_key=`"
    ):
        split_batch({"a": X, "b": X})


def test_split_batch_bad_keys_explain_themselves():
    with pytest.raises(ValueError, match=r"target_key='y': no such key in the batch; its keys are \['img'\]"):
        split_batch({"img": X}, target_key="y")
    with pytest.raises(ValueError, match="names a dict key, but the batch is a tuple"):
        split_batch((X, Y), target_key="y")
    with pytest.raises(ValueError, match="is a position, but the batch is a dict"):
        split_batch({"x": X}, target_key=1)
    with pytest.raises(ValueError, match="the batch has only 2 elements"):
        split_batch((X, Y), target_key=5)
    with pytest.raises(ValueError, match="not a tensor; pass `target_key=`"):
        split_batch((X, {"nested": Y}))
    with pytest.raises(ValueError, match="pass `input_key=`"):
        split_batch(object())


def test_validate_key_spec_rejects_wrong_types():
    validate_key_spec("y", "Cb", "target_key")
    validate_key_spec(1, "Cb", "target_key")
    validate_key_spec(lambda b: b, "Cb", "target_key")
    with pytest.raises(
        TypeError,
        match=r"Cb\(target_key=1.5\): expected a dict key \(str\), a position \(int\) or a callable",
    ):
        validate_key_spec(1.5, "Cb", "target_key")
    with pytest.raises(TypeError, match="got a bool"):
        validate_key_spec(True, "Cb", "input_key")


def test_nested_helpers():
    Pair = namedtuple("Pair", "a b")
    nested = {"a": [X, (Y, Pair(X, 3))]}
    assert first_tensor(nested) is X
    assert batch_size_of(nested) == 4
    assert batch_size_of({"a": "text"}) is None
    doubled = map_tensors(nested, lambda t: t * 2)
    assert torch.equal(doubled["a"][1][1].a, X * 2) and doubled["a"][1][1].b == 3
    assert isinstance(doubled["a"][1][1], Pair)
