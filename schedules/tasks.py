"""django-q2 entry points of the schedules app. Safe to run twice, or many times at once."""


def tick() -> dict[str, int]:
    from schedules.services import schedules_tick

    return schedules_tick()
