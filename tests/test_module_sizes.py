"""The layout's promise (docs/architecture.md): no module of the apps is over 600 lines, so
each concept stays a file a reader can hold. Migrations are generated and exempt."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("portal", "runs", "billing", "schedules")
LIMIT = 600


def test_no_app_module_is_over_600_lines():
    too_long = {
        str(path.relative_to(ROOT)): lines
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert too_long == {}, f"split these by concept: {too_long}"


def test_the_check_sees_the_apps():
    # A moved tree must not turn the test above into one that checks nothing.
    assert sum(1 for p in PACKAGES for _ in (ROOT / p).rglob("*.py")) > 150
