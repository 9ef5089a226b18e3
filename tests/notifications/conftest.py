import pytest

from tests.notifications.receiver import Receiver, start_receiver
from tests.runs.conftest import coasty, funded_team  # noqa: F401 — shared fixtures


@pytest.fixture
def receiver():
    """A local endpoint (http://127.0.0.1:<port>/hook/) that records what it gets."""
    receiver = Receiver()
    server = start_receiver(receiver)
    yield receiver
    server.shutdown()
    server.server_close()
