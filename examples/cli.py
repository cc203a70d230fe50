"""The digits demo through ``LightningCLI``: every recipe callback configured in YAML.

    python examples/cli.py fit --config examples/cli_config.yaml
    python examples/cli.py fit --config examples/cli_config.yaml --trainer.max_epochs 3

The model and data module are those of ``examples/digits.py``; the callbacks (all of them) come
from the ``trainer.callbacks`` list of the YAML file, each with its ``class_path`` and
``init_args``, so any argument of any callback can be set there.
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch.cli import LightningCLI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from digits import DigitsConvNet, DigitsData


def main(args: list[str] | None = None) -> LightningCLI:
    return LightningCLI(DigitsConvNet, DigitsData, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
