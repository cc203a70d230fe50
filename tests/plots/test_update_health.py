"""plots.update_health: readable, unique layer labels and the per-layer figure."""

from __future__ import annotations

import math
import re

from lightning_recipe.plots.style import figure_to_array
from lightning_recipe.plots.update_health import health_figure, layer_labels


def _hf_resnet18() -> tuple[list[str], list[str]]:
    """Layer names and classes of transformers' ResNetForImageClassification (resnet-18 layout)."""
    names = ["resnet.embedder.embedder.convolution", "resnet.embedder.embedder.normalization"]
    for s in range(4):
        for b in range(2):
            block = f"resnet.encoder.stages.{s}.layers.{b}"
            parts = (["shortcut"] if s and not b else []) + ["layer.0", "layer.1"]
            names += [f"{block}.{p}.{leaf}" for p in parts for leaf in ("convolution", "normalization")]
    names.append("classifier.1")
    kinds = [
        "Linear" if n.startswith("classifier") else "Conv2d" if n.endswith("convolution") else "BatchNorm2d"
        for n in names
    ]
    return names, kinds


def _segments(label: str) -> list[str]:
    return [s for s in re.split(r"[.…]", label.split(" · ")[0].split(" #")[0]) if s]


def test_layer_labels_of_a_deep_resnet_are_unique_short_and_keep_every_index():
    names, kinds = _hf_resnet18()
    labels = layer_labels(names, kinds)
    assert len(set(labels)) == len(labels) == 41
    assert all(len(label) <= 48 for label in labels), [lb for lb in labels if len(lb) > 48]
    for name, label in zip(names, labels):
        segments = name.split(".")
        assert set(_segments(label)) <= set(segments), label  # whole segments only, never cut mid-word
        assert [s for s in segments if s.isdigit()] == [s for s in _segments(label) if s.isdigit()], label
        assert _segments(label)[-1] == segments[-1]
    assert labels[names.index("resnet.encoder.stages.2.layers.1.layer.0.convolution")] == (
        "…stages.2.layers.1.layer.0.convolution · Conv2d"
    )
    assert labels[names.index("resnet.encoder.stages.1.layers.0.shortcut.normalization")] == (
        "…stages.1.layers.0.shortcut.normalization"
    )
    # what the old left cut gave: several stages with the same label
    old = ["…" + lb[-33:] if len(lb) > 34 else lb for lb in (f"{n} · {k}" for n, k in zip(names, kinds))]
    assert len(set(old)) < len(old)


def test_layer_labels_keep_short_names_and_never_repeat():
    assert layer_labels(["net.1", "net.3", ""], ["Linear", "Linear", None]) == [
        "net.1 · Linear",
        "net.3 · Linear",
        "(root)",
    ]
    assert layer_labels(["layer1.0.relu", "layer1.0.relu:2"]) == ["layer1.0.relu", "layer1.0.relu:2"]
    long = "x" * 60
    labels = layer_labels([f"a.{long}", f"b.{long}"], width=20)
    assert len(set(labels)) == 2
    assert layer_labels([]) == []


def test_health_figure_has_a_title_and_renders():
    names, kinds = _hf_resnet18()
    n = len(names)
    ratio = [-3.0] * n
    ratio[3] = math.nan
    fig = health_figure(
        7, names, ratio, [0.0] * n, ["resnet.embedder.embedder.activation"], [0.25], kinds=kinds
    )
    assert fig.texts[0].get_text() == "UpdateHealth · step 7"
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(set(ticks)) == n and ticks[-1] == "classifier.1 · Linear"
    image = figure_to_array(fig)
    assert image.shape[1] > 600 and image.shape[2] == 3
