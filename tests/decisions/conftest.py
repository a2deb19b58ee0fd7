"""What the decisions' tests share."""

from __future__ import annotations

import pytest

from ..support.decider import Decider


@pytest.fixture
def decider() -> Decider:
    return Decider()
