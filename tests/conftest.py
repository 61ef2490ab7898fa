"""crmkit's own suite runs on the ``crmkit.testing`` plugin, like every plugin's tests,
with one addition: the recorder plugin, registered in-process, which implements every
hook and records its calls."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests import recorder_plugin


@pytest.fixture(scope="session")
def crmkit_extra_plugins() -> Sequence[object]:
    return [recorder_plugin]
