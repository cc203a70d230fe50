"""Deprecated alias of :mod:`lightning_recipe.writer` (the module was renamed so that it no longer
shadows the standard library's ``logging``). ``import lightning_recipe.writer`` keeps working and
is the very same module object as :mod:`lightning_recipe.writer`."""

import sys

from lightning_recipe import writer as _writer

sys.modules[__name__] = _writer
