"""pytest plugin: the ``thrillconnect_sim`` fixture.

Registered as a ``pytest11`` entry point, so every pytest run of an operator loads this module:
it imports nothing heavy; the simulator is imported when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flask_thrillconnect.testing.simulator import Simulator


@pytest.fixture
def thrillconnect_sim() -> Iterator[Simulator]:
    """A started simulator on a free loopback port (manual ticks, seed 1, no random wins),
    stopped after the test."""
    from flask_thrillconnect.testing import missing_testing_extra

    problem = missing_testing_extra()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    from flask_thrillconnect.testing.simulator import Simulator

    with Simulator(tick_interval=0, seed=1, win_chance=0) as simulator:
        yield simulator
