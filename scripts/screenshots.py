"""`make screenshots`: re-run the demo, photograph TensorBoard, refresh the README's sample report.

1. runs ``examples/digits.py`` (the whole recipe, as ``make demo`` does) into a fresh folder;
2. replaces the README's sample report (between ``<!-- demo-report:start -->`` and
   ``<!-- demo-report:end -->``) with the report the demo just printed;
3. writes the demo's figures, read back from its event files, to ``docs/images/`` (the README's
   per-callback pictures);
4. serves the folder with TensorBoard and saves headless-Chromium screenshots of the Custom
   Scalars, Text, Images (tag filter ``update_health|prediction_dynamics``) and HParams tabs as
   ``docs/images/tensorboard_*.png``.

    .venv/bin/python scripts/screenshots.py [--logdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMAGES = os.path.join(ROOT, "docs", "images")
sys.path.insert(0, HERE)

from tb_browser import Browser, TensorBoard, find_chromium  # noqa: E402

#: README picture <- the demo's image tag (``first`` step or ``last``).
FIGURES = {
    "batch_independence.png": ("recipe/batch_independence/dependency", "last"),
    "batch_inspector.png": ("recipe/batch_inspector/images", "last"),
    "bias_init_priors.png": ("recipe/bias_init/priors", "last"),
    "data_class_counts.png": ("recipe/data/class_counts", "last"),
    "data_extremes.png": ("recipe/data/extremes", "last"),
    "dumb_baselines_comparison.png": ("recipe/dumb_baselines/comparison", "last"),
    "first_layer_filters_init.png": ("recipe/first_layer/filters", "first"),
    "first_layer_filters.png": ("recipe/first_layer/filters", "last"),
    "input_independent_curves.png": ("recipe/input_independent/curves", "last"),
    "overfit_batch.png": ("recipe/overfit_batch/summary", "last"),
    "prediction_dynamics.png": ("recipe/prediction_dynamics/trajectories", "last"),
    "prediction_dynamics_predictions.png": ("recipe/prediction_dynamics/predictions", "last"),
    "update_health_layers.png": ("recipe/update_health/layers", "last"),
}

#: Screenshot file <- (TensorBoard URL fragment and query, text to wait for, window size).
SHOTS = {
    "tensorboard_custom_scalars.png": (
        "#custom_scalars",
        "forceSVG=true",
        "training loss, raw and smoothed",
        (1400, 1300),
    ),
    "tensorboard_report.png": ("#text", "", "status check message", (1400, 1000)),
    "tensorboard_images.png": (
        "#images&tagFilter=update_health%7Cprediction_dynamics",
        "",
        "recipe/",
        (1400, 1300),
    ),
    "tensorboard_hparams.png": ("#hparams", "", "recipe/report/fail", (1400, 700)),
}

START, END = "<!-- demo-report:start -->", "<!-- demo-report:end -->"


def run_demo(logdir: str) -> str:
    cmd = [sys.executable, os.path.join(ROOT, "examples", "digits.py"), "--logdir", logdir]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr


def demo_report(output: str) -> list[str]:
    """The report the demo printed: its headline and one line per finding."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lightning_recipe report:"))
    out = [lines[start]]
    for line in lines[start + 1 :]:
        if not re.match(r"^ +(pass|warn|fail|skipped)  ", line):
            break
        out.append(line)
    return out


def refresh_readme(report: list[str]) -> None:
    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to refresh")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    block = "\n```\n" + "\n".join(report) + "\n```\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + START + block + END + tail)


def save_figures(run_dir: str) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(run_dir, size_guidance={ea.IMAGES: 0})
    acc.Reload()
    for name, (tag, which) in FIGURES.items():
        if tag not in acc.Tags()["images"]:
            print(f"  (no {tag} in the demo: docs/images/{name} left as it is)")
            continue
        events = acc.Images(tag)
        event = events[0] if which == "first" else events[-1]
        with open(os.path.join(IMAGES, name), "wb") as fh:
            fh.write(event.encoded_image_string)
        print(f"  docs/images/{name}  <- {tag} at step {event.step} ({event.width} x {event.height})")


def screenshots(logdir: str) -> None:
    if find_chromium() is None:
        raise SystemExit("screenshots: no chromium on PATH (apt-get install -y chromium)")
    with TensorBoard(logdir) as tb, Browser() as browser:
        for name, (fragment, query, wait_for, (width, height)) in SHOTS.items():
            browser.resize(width, height)
            browser.open(tb.url(fragment, query), wait_for=wait_for, timeout=60, settle=3.0)
            print(f"  docs/images/{name}  <- TensorBoard {fragment}")
            browser.screenshot(os.path.join(IMAGES, name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", help="where the demo logs (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary log folder")
    args = parser.parse_args(argv)
    logdir = args.logdir or tempfile.mkdtemp(prefix="recipe-demo-")
    try:
        print(f"running the demo into {logdir} ...")
        output = run_demo(logdir)
        report = demo_report(output)
        print("\n".join(report))
        refresh_readme(report)
        print("README.md: sample report refreshed")
        run_dir = re.search(r"TensorBoard logs written to (.+)", output).group(1).strip()  # type: ignore[union-attr]
        save_figures(run_dir)
        screenshots(run_dir)  # this run only: a reused --logdir may hold older ones
    finally:
        if not args.logdir and not args.keep:
            shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
