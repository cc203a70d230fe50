"""The periodic work that costs almost nothing: hooks Lightning skips, and the rendering process."""

from __future__ import annotations

import functools
import io
import os
import pkgutil
import time

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from PIL import Image

from lightning_recipe import PredictionDynamics, RecipeReport, UpdateHealth, recipe_callbacks
from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback
from lightning_recipe.core.budget import PER_BATCH_HOOKS, skip_unused_hooks
from lightning_recipe.demos import TinyClassifier, classification_data
from lightning_recipe.plots.style import figure_to_array
from lightning_recipe.plots.update_health import health_figure
from tests.helpers import make_trainer, png_shape, read_events

_FIGURE = functools.partial(
    health_figure, 10, ["0", "2"], [-3.1, -2.7], [-1.0, -0.5], ["1"], [0.25], kinds=["Linear", "Linear"]
)


# ---------------------------------------------------------------------- hooks Lightning skips
def test_hooks_a_recipe_callback_does_not_override_are_none_so_lightning_skips_them():
    for cb in recipe_callbacks("full", seed=0):
        for hook in PER_BATCH_HOOKS:
            fn = getattr(type(cb), hook)
            defined = any(
                hook in vars(k) and vars(k)[hook] is not None
                for k in type(cb).__mro__
                if k not in (Callback, object)
            )
            # not overridden: None, or Callback's no-op again when a subclass elsewhere calls super()
            assert callable(fn) if defined else fn in (None, getattr(Callback, hook)), (
                type(cb).__name__,
                hook,
            )

    class Fresh(RecipeCallback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx): ...

    assert [h for h in PER_BATCH_HOOKS if getattr(Fresh(), h) is not None] == ["on_train_batch_end"]
    report = RecipeReport()
    assert report.on_train_batch_end is not None and report.on_before_zero_grad is None


def test_a_subclass_overriding_a_skipped_hook_is_called_and_super_works(tmp_path):
    calls = []

    class Mine(UpdateHealth):
        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            super().on_before_zero_grad(trainer, pl_module, optimizer)  # the no-op of Callback again
            calls.append(trainer.global_step)

    class Other(Callback):
        def on_after_backward(self, trainer, pl_module):
            calls.append("other")

    class Both(PredictionDynamics, Other):  # a None of PredictionDynamics must not hide Other's hook
        pass

    both = Both(every_n_train_steps=2)
    assert callable(both.on_after_backward)
    trainer = make_trainer(tmp_path, [Mine(every_n_train_steps=2), both], max_steps=3)
    trainer.fit(TinyClassifier(hidden=16), classification_data())
    assert calls.count("other") == 3 and [c for c in calls if c != "other"] == [0, 1, 2]


def test_skip_unused_hooks_on_a_plain_class():
    class Base:
        def on_train_batch_end(self, *args):
            return "base"

    class Child(Base):
        pass

    skip_unused_hooks(Child, Base)
    assert Child.on_train_batch_end is None and Base().on_train_batch_end() == "base"


def test_state_key_is_cached_for_the_run_and_computed_again_after_setup():
    health = UpdateHealth(every_n_train_steps=7)
    assert health.state_key == "UpdateHealth{'every_n_train_steps': 7}"
    health.every_n_train_steps = 9  # changed before a fit: the key follows at setup
    health.__dict__.pop("_state_key")
    assert health.state_key.endswith("9}")


# ---------------------------------------------------------------------- the rendering process
@pytest.fixture
def render_process():
    recipe_logging.set_render_process("process")
    yield recipe_logging._process
    recipe_logging.shutdown()
    recipe_logging.set_render_process("auto")


def _wait_ready(process, tries=600):
    import time

    for _ in range(tries):  # it imports numpy and matplotlib first; until then the thread draws
        if process.render(_FIGURE) is not None:
            return
        time.sleep(0.05)
    raise AssertionError("the rendering process never became ready")


def test_the_process_draws_the_same_image_as_the_thread(render_process):
    _wait_ready(render_process)
    png, shape, seconds = render_process.render(_FIGURE)  # drawn and PNG-encoded there
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert shape == image.shape and np.array_equal(image, figure_to_array(_FIGURE()))
    assert seconds > 0 and render_process.running
    assert render_process.render(lambda: _FIGURE()) is None  # a lambda is not picklable: drawn here
    recipe_logging.shutdown()
    assert not render_process.running


def test_a_fit_with_the_process_writes_the_same_images_and_keeps_it(tmp_path, render_process):
    _wait_ready(render_process)
    before = render_process.rendered

    def fit(path):
        torch.manual_seed(0)
        health = UpdateHealth(every_n_train_steps=2, figure_every_n_train_steps=2)
        trainer = make_trainer(path, [health], max_steps=4)
        trainer.fit(TinyClassifier(hidden=16), classification_data())
        return trainer

    trainer = fit(tmp_path / "process")
    assert render_process.rendered > before  # it drew some of them
    assert render_process.running  # kept for the next fit (a start costs ~0.45 s)
    via_process = read_events(trainer.loggers[0]).images("recipe/update_health/layers")
    recipe_logging.set_render_process("thread")
    trainer = fit(tmp_path / "thread")
    via_thread = read_events(trainer.loggers[0]).images("recipe/update_health/layers")
    recipe_logging.set_render_process("inline")
    trainer = fit(tmp_path / "inline")
    inline = read_events(trainer.loggers[0]).images("recipe/update_health/layers")
    assert [s for s, *_ in via_process] == [s for s, *_ in via_thread] == [s for s, *_ in inline] == [0, 2]
    for (_, _, _, a), (_, _, _, b), (_, _, _, c) in zip(via_process, via_thread, inline):
        assert png_shape(a)[2] == 3 and a == b == c  # the same PNG, byte for byte


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_drain_draws_beside_the_render_thread_and_keeps_each_tags_order(tmp_path, render_process, mode):
    recipe_logging.set_render_process(mode)
    if mode == "process":
        _wait_ready(render_process)
    trainer = make_trainer(tmp_path, [], max_steps=1)
    helped, rendered = recipe_logging._renderer.helped, render_process.rendered
    for step in range(6):
        for tag in ("recipe/demo/a", "recipe/demo/b"):
            recipe_logging.log_figure(trainer, tag, _FIGURE, step)
    recipe_logging.drain()
    events = read_events(trainer.loggers[0])
    for tag in ("recipe/demo/a", "recipe/demo/b"):  # all of them, each tag in its order
        assert [s for s, *_ in events.images(tag)] == list(range(6))
    assert recipe_logging._renderer.helped > helped  # drain() drew some of them itself
    assert (render_process.rendered > rendered) == (mode == "process")


def test_drain_waits_for_an_earlier_figure_of_the_same_tag_on_the_render_thread():
    import threading

    renderer, gate, order = recipe_logging._Renderer(), threading.Event(), []
    renderer.submit("a", lambda here: (gate.wait(10), order.append(("a", 1, here))))
    for _ in range(200):  # the render thread has taken it and waits at the gate
        if renderer._queue.empty():
            break
        threading.Event().wait(0.01)
    renderer.submit("a", lambda here: order.append(("a", 2, here)))
    renderer.submit("b", lambda here: order.append(("b", 1, here)))
    threading.Timer(0.3, gate.set).start()
    renderer.drain()  # takes ("a", 2) at once, but draws it only after ("a", 1)
    assert order.index(("a", 1, False)) < order.index(("a", 2, True)) and len(order) == 3


def test_a_forked_child_does_not_use_the_parents_process(render_process):
    _wait_ready(render_process)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh handle, not the parent's pipes
        ok = recipe_logging._process is not render_process and not recipe_logging._process.running
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert render_process.render(_FIGURE) is not None  # the parent's still works


def test_figures_drawn_inline_are_charged_once(tmp_path):
    from lightning_recipe.core.budget import CostMeter, set_running

    recipe_logging.set_render_process("inline")
    assert recipe_logging._render_mode() == "inline"
    trainer = make_trainer(tmp_path, [], max_steps=1)
    meter = CostMeter()
    previous = set_running((meter, False))
    try:
        recipe_logging.log_figure(trainer, "recipe/demo/figure", _FIGURE, 0)
    finally:
        set_running(previous)
    recipe_logging.set_render_process("auto")
    assert not recipe_logging._renderer._queue.unfinished_tasks  # nothing left for a thread
    assert meter.render_s > 0 and meter.during_s == 0  # the hook's own wall time holds it


def test_auto_draws_in_the_process_only_when_torch_leaves_a_core_free(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: threads + 1)
    assert recipe_logging._render_mode() == "process"
    monkeypatch.setattr(recipe_logging._process, "_failed", True)  # it could not start: inline
    assert recipe_logging._render_mode() == "inline"
    monkeypatch.setattr(recipe_logging._process, "_failed", False)
    monkeypatch.setattr(os, "cpu_count", lambda: threads)
    assert recipe_logging._render_mode() == "inline"
    monkeypatch.setenv("LIGHTNING_RECIPE_RENDER", "thread")
    assert recipe_logging._render_mode() == "thread"


def test_the_rendering_process_imports_every_plot_module_without_torch():
    import subprocess

    from lightning_recipe import plots
    from lightning_recipe._render_worker import command

    names = sorted(m.name for m in pkgutil.iter_modules(plots.__path__))
    assert "update_health" in names and "data_inspector" in names
    then = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module('lightning_recipe.plots.' + name)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('lightning.')))"
    )
    out = subprocess.run(command(then), capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_figure_that_fails_inline_is_a_warning_not_an_error(tmp_path):
    trainer = make_trainer(tmp_path, [], max_steps=1)

    def broken():
        raise RuntimeError("no such colormap")

    for mode in ("inline", "thread", "process"):  # a local function: the process hands it back
        recipe_logging.set_render_process(mode)
        with pytest.warns(UserWarning, match="rendering a figure failed.*no such colormap"):
            recipe_logging.log_figure(trainer, "recipe/demo/figure", broken, 0)
            recipe_logging.drain()
    recipe_logging.shutdown()
    recipe_logging.set_render_process("auto")


def test_render_mode_is_validated():
    with pytest.raises(ValueError, match="set_render_process"):
        recipe_logging.set_render_process("gpu")  # type: ignore[arg-type]


def test_an_inline_figure_waits_for_its_own_tag_only(tmp_path):
    # a Figure (not a builder) is drawn at once; figures of other tags still queued must not hold
    # it (DataInspector's three figures queued, then FinalBiasInit's: 0.7 s of waiting on the
    # digits), while a figure queued earlier under its own tag is still written first
    import threading

    trainer = make_trainer(tmp_path, [], max_steps=1)
    gate = threading.Event()

    def slow():
        gate.wait(20)
        return _FIGURE()

    try:
        recipe_logging.set_render_process("thread")
        recipe_logging.log_figure(trainer, "recipe/demo/queued", slow, 0)
        start = time.perf_counter()
        recipe_logging.log_figure(trainer, "recipe/demo/here", _FIGURE(), 0)  # while the other waits
        assert time.perf_counter() - start < 10.0 and not gate.is_set()  # not held for the gate's 20 s
        recipe_logging.log_figure(trainer, "recipe/demo/queued", _FIGURE, 1)  # a builder of that tag
        threading.Timer(0.3, gate.set).start()
        recipe_logging.set_render_process("inline")
        recipe_logging.log_figure(trainer, "recipe/demo/queued", _FIGURE(), 2)  # after steps 0 and 1
        assert gate.is_set()
    finally:
        gate.set()
        recipe_logging.drain()
        recipe_logging.set_render_process("auto")
    events = read_events(trainer.loggers[0])
    assert [s for s, *_ in events.images("recipe/demo/queued")] == [0, 1, 2]
    assert [s for s, *_ in events.images("recipe/demo/here")] == [0]
