"""Root test configuration, for the tests and the doctests alike."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fail_when_a_callback_stopped_itself(request):
    """A recipe callback that stopped itself after an error fails the test, unless it says it expects one.

    The hook guard turns a crash inside a check into a ``skipped`` finding and lets training go
    on: without this, "training unchanged with and without the callback" passes for a crashed check.
    """
    from lightning_recipe.callbacks.base import STOPPED_AFTER_ERROR

    STOPPED_AFTER_ERROR.clear()
    yield
    stopped = list(STOPPED_AFTER_ERROR)
    STOPPED_AFTER_ERROR.clear()
    if stopped and request.node.get_closest_marker("expect_callback_error") is None:
        lines = "\n".join(f"  {cb}.{hook}: {err}" for cb, hook, err in stopped)
        pytest.fail(
            f"a recipe callback stopped itself after an error (mark the test with "
            f"@pytest.mark.expect_callback_error if that is the point):\n{lines}",
            pytrace=False,
        )
