"""The dashboard as a person sees it: TensorBoard in headless Chromium on two short real runs.

One healthy digits run and one with a planted bug (logits scaled by 40: the loss at init is far
above ln 10) are logged to one folder; TensorBoard serves it; headless Chromium loads the Custom
Scalars, Text, Images and HParams tabs and the test reads what the page shows (text through shadow
roots, the images' decoded sizes), next to TensorBoard's own HTTP data API. Screenshots go to
``$RECIPE_SCREENSHOTS`` (default: the test's temporary folder).

Skipped, with the reason, when Chromium is missing (``apt-get install -y chromium``); deselect with
``-m "not browser"``.
"""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "examples"))

from tb_browser import Browser, TensorBoard, find_chromium  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        find_chromium() is None,
        reason="no chromium on PATH (apt-get install -y chromium; .ci/run installs it)",
    ),
]


def _run(logdir: str, version: str, model_cls: type) -> None:
    from digits import DigitsData

    from lightning_recipe import recipe_callbacks

    callbacks = recipe_callbacks(
        "full",
        seed=1337,
        overrides={
            "UpdateHealth": {"every_n_train_steps": 4},
            "PredictionDynamics": {"every_n_train_steps": 6},
            "RecipeReport": {"print_summary": False},
        },
    )
    model = model_cls()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=4,
        callbacks=callbacks,
        logger=TensorBoardLogger(logdir, name="digits", version=version, default_hp_metric=False),
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, DigitsData(limit=384))


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    import warnings

    from digits import DigitsConvNet

    class ScaledLogits(DigitsConvNet):
        """The planted bug: logits 40x too large (a temperature left in, a wrong loss scale)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 40.0 * self.net(x)

    logdir = str(tmp_path_factory.mktemp("dashboard"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _run(logdir, "healthy", DigitsConvNet)
        _run(logdir, "planted_bug", ScaledLogits)
    shots = os.environ.get("RECIPE_SCREENSHOTS") or os.path.join(logdir, "screenshots")
    with TensorBoard(logdir) as tb, Browser(1400, 1000) as browser:
        yield tb, browser, shots


def test_custom_scalars_page_holds_the_recipe_charts(dashboard):
    tb, browser, shots = dashboard
    layout = tb.json("/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c for cat in layout["category"] for c in cat["chart"]}
    assert [cat["title"] for cat in layout["category"]][:2] == [
        "recipe: loss",
        "recipe: updates, gradients, dead units",
    ]
    assert charts["validation loss vs dumb baselines"]["multiline"]["tag"] == [
        "^val_loss$",
        "^recipe/dumb_baselines/prior_loss$",
    ]
    assert "^train_loss$" in charts["training loss, raw and smoothed"]["multiline"]["tag"]
    margin = charts["log10 update/weight ratio: median, min to max over layers"]["margin"]["series"]
    assert margin[0] == {
        "value": "recipe/update_health/log10_update_ratio_median",
        "lower": "recipe/update_health/log10_update_ratio_min",
        "upper": "recipe/update_health/log10_update_ratio_max",
    }
    text = browser.open(
        tb.url("#custom_scalars", "forceSVG=true"), wait_for="training loss, raw and smoothed"
    )
    for title in (
        "validation loss vs dumb baselines",
        "gradient norm per layer",
        "prediction jitter on the fixed batch",
    ):
        assert title in text
    assert os.path.getsize(browser.screenshot(os.path.join(shots, "custom_scalars.png"))) > 20_000


def test_text_tab_opens_on_the_report_with_the_failing_check_first(dashboard):
    tb, browser, shots = dashboard
    tags = tb.json("/data/plugin/text/tags")
    assert {run: sorted(t)[0] for run, t in tags.items()} == {
        "digits/healthy": "recipe/0_report/text_summary",
        "digits/planted_bug": "recipe/0_report/text_summary",
    }
    text = browser.open(tb.url("#text"), wait_for="status check message")
    pattern = r"step \d+ ([^()]*?) \(every number: recipe_report\.json in the log dir\) status check message \S (\w+) (\w+)"
    # one card per run; a card lists the report's steps, the latest first
    cards = [re.search(pattern, card) for card in text.split("tag: recipe/0_report/text_summary")[1:]]
    assert len(cards) == 2 and all(cards), text[:3000]
    cards = [card.groups() for card in cards]
    healthy, buggy = sorted(cards, key=lambda card: "fail" in card[0])
    assert "fail" not in healthy[0] and re.fullmatch(r"\d+ fail(, \d+ \w+)+", buggy[0])  # the headline
    assert buggy[1:] == ("fail", "LossAtInitCheck")  # the planted bug's card opens on the failure
    assert text.index("recipe/0_report") < text.index(
        "recipe/seed/fingerprint"
    )  # the report is the first card
    browser.screenshot(os.path.join(shots, "text_report.png"))


def test_images_render_and_hparams_compare_the_runs(dashboard):
    tb, browser, shots = dashboard
    browser.open(tb.url("#images"), wait_for="recipe/batch_independence/dependency")
    images = browser.images()
    shown = [i for i in images if "individualImage" in i["src"]]
    assert len(shown) >= 10 and all(i["w"] > 0 and i["h"] > 0 for i in shown)  # every image decoded
    assert max(i["w"] for i in shown) <= 700  # sized for a card
    browser.screenshot(os.path.join(shots, "images.png"))

    experiment = tb.json("/data/plugin/hparams/experiment", {"experimentName": ""})
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert {"recipe/report/fail", "recipe/loss_at_init/measured", "recipe/loss_at_init/expected"} <= set(
        metrics
    )
    assert {"lr", "channels", "recipe/seed", "recipe/optimizer"} <= {
        h["name"] for h in experiment["hparamInfos"]
    }
    groups = tb.json(
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN"],
            "colParams": [],
            "startIndex": 0,
            "sliceSize": 10,
        },
    )["sessionGroups"]
    value = {g["name"]: {m["name"]["tag"]: m["value"] for m in g["metricValues"]} for g in groups}
    assert value["digits/planted_bug"]["recipe/report/fail"] >= 1
    assert (
        value["digits/planted_bug"]["recipe/loss_at_init/measured"]
        > 2 * value["digits/healthy"]["recipe/loss_at_init/measured"]
    )
    text = browser.open(tb.url("#hparams"), wait_for="digits/planted_bug")
    assert "recipe/report/fail" in text
    browser.screenshot(os.path.join(shots, "hparams.png"))
