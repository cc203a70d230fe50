"""Unit tests for lightning_recipe.core.model_call: the one way the checks call a module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_recipe.core.model_call import ModelCall, unpack_output


class _Positional(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 3)

    def forward(self, x):
        return self.net(x)


class _Kwargs(_Positional):
    def forward(self, **batch):
        logits = self.net(batch["x"])
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = nn.functional.cross_entropy(logits, batch["labels"])
        return out


class _Named(_Positional):
    def forward(self, input_ids, attention_mask=None):
        return self.net(input_ids * attention_mask)


class _WholeBatch(_Positional):
    def forward(self, batch):
        return self.net(batch["features"])


class _Output:  # an object with attributes, like a Hugging Face ModelOutput without the dict part
    def __init__(self, logits, loss=None):
        self.logits, self.loss = logits, loss


def _dict_batch(n=5):
    return {"x": torch.randn(n, 4), "labels": torch.randint(0, 3, (n,))}


@pytest.mark.parametrize(
    ("module", "batch", "convention"),
    [
        (_Positional(), (torch.randn(5, 4), torch.zeros(5)), "positional"),
        (_Positional(), torch.randn(5, 4), "positional"),
        (_Positional(), {"x": torch.randn(5, 4), "y": torch.zeros(5)}, "kwargs_inputs"),  # forward(x): x=...
        (_Positional(), {"image": torch.randn(5, 4), "y": torch.zeros(5)}, "positional"),
        (_Kwargs(), _dict_batch(), "kwargs"),
        (
            _Named(),
            {"input_ids": torch.randn(5, 4), "attention_mask": torch.ones(5, 4), "labels": torch.zeros(5)},
            "kwargs_inputs",
        ),
        (_WholeBatch(), {"features": torch.randn(5, 4), "target": torch.zeros(5)}, "batch"),
    ],
)
def test_each_call_convention_is_inferred_from_the_batch_and_the_signature(module, batch, convention):
    call = ModelCall()
    out = call(module, batch)
    assert call.convention == convention
    assert out.logits is not None and tuple(out.logits.shape) == (5, 3)


def test_kwargs_call_passes_the_labels_so_the_model_computes_its_loss():
    out = ModelCall()(_Kwargs(), _dict_batch())
    assert out.loss is not None and out.loss.dim() == 0


def test_named_parameters_hold_back_the_target_keys():
    seen = {}

    class Strict(_Positional):
        def forward(self, input_ids):
            seen["called"] = True
            return self.net(input_ids)

    call = ModelCall()
    call(Strict(), {"input_ids": torch.randn(5, 4), "labels": torch.zeros(5)})
    assert call.convention == "kwargs_inputs" and seen["called"]


def test_user_forward_overrides_the_convention():
    call = ModelCall(forward=lambda m, x: m(x) * 0)
    out = call(_Positional(), (torch.randn(2, 4), torch.zeros(2)))
    assert call.convention == "custom" and torch.equal(out.logits, torch.zeros(2, 3))


def test_a_module_that_cannot_be_called_names_forward():
    class Odd(nn.Module):
        def forward(self, a, b, c):
            return a

    with pytest.raises(TypeError, match="pass `forward=`"):
        ModelCall()(Odd(), (torch.randn(2, 4), torch.zeros(2)))


def test_the_call_restores_modes_grad_mode_and_rng():
    module = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    module.train()
    x = torch.randn(3, 4)
    state = torch.get_rng_state()
    out = ModelCall()(module, x, train=False)
    assert module.training and torch.is_grad_enabled() and torch.equal(state, torch.get_rng_state())
    assert not out.logits.requires_grad
    out = ModelCall()(module, x, grad=True, train=None)
    assert out.logits.requires_grad


@pytest.mark.parametrize(
    ("output", "has_logits", "has_loss"),
    [
        (torch.zeros(2, 3), True, False),
        ({"logits": torch.zeros(2, 3), "loss": torch.tensor(1.0)}, True, True),
        ({"pred": torch.zeros(2, 3)}, True, False),
        (_Output(torch.zeros(2, 3), torch.tensor(1.0)), True, True),
        ((torch.tensor(0.5), torch.zeros(2, 3)), True, True),
        ((torch.zeros(2, 3), torch.zeros(2, 5)), True, False),
        ("text", False, False),
    ],
)
def test_outputs_are_unpacked_the_same_way_everywhere(output, has_logits, has_loss):
    out = unpack_output(output)
    assert (out.logits is not None) == has_logits and (out.loss is not None) == has_loss
    if has_logits:
        assert tuple(out.logits.shape) == (2, 3)


def test_hugging_face_model_output_is_read_as_a_mapping():
    transformers = pytest.importorskip("transformers")
    out = transformers.modeling_outputs.SequenceClassifierOutput(
        loss=torch.tensor(0.3), logits=torch.zeros(2, 4)
    )
    unpacked = unpack_output(out)
    assert unpacked.loss is not None and tuple(unpacked.logits.shape) == (2, 4)


def test_the_error_hint_is_the_callers():
    class Odd(nn.Module):
        def forward(self, a, b, c):
            return a

    with pytest.raises(TypeError) as err:
        ModelCall(hint="pass `layer=`")(Odd(), (torch.randn(2, 4), torch.zeros(2)))
    assert str(err.value).endswith("; pass `layer=`") and "forward=" not in str(err.value)


def test_coarse_segmentation_logits_are_upsampled_to_the_labels_as_the_loss_does():
    coarse = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1))  # (N, 4, 8, 8) for 32x32 images
    x, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    out = ModelCall()(coarse, (x, masks))
    expected = nn.functional.interpolate(coarse(x), size=(32, 32), mode="bilinear", align_corners=False)
    assert out.logits.shape == (2, 4, 32, 32) and torch.allclose(out.logits, expected)
    assert out.raw.shape == (2, 4, 8, 8)  # what the module returned is kept
    # twins left as they are: labels per sample, logits already at the labels' size, another aspect
    assert ModelCall()(coarse, (x, torch.tensor([0, 3]))).logits.shape == (2, 4, 8, 8)
    same = nn.Conv2d(3, 4, 3, padding=1)
    assert ModelCall()(same, (x, masks)).logits.shape == (2, 4, 32, 32)
    assert ModelCall()(coarse, (x, torch.randint(0, 4, (2, 32, 64)))).logits.shape == (2, 4, 8, 8)
    assert ModelCall()(coarse, (x, masks[:, None])).logits.shape == (2, 4, 32, 32)  # (N, 1, H, W) indices
    assert ModelCall()(coarse, (x, torch.rand(2, 32, 32))).logits.shape == (2, 4, 8, 8)  # a float map
    one_logit = nn.Conv2d(3, 1, 3, stride=4, padding=1)  # binary segmentation with BCE: 0/1 float masks
    assert ModelCall()(one_logit, (x, (masks > 1).float())).logits.shape == (2, 1, 32, 32)
    crop = nn.Conv2d(3, 4, 5)  # a valid-padding net: 28x28 for 32x32 labels, a crop, not a stride
    assert ModelCall()(crop, (x, masks)).logits.shape == (2, 4, 28, 28)
