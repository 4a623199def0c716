"""Call slots without Luigi: a pool's slots are held by its calls, the next waits its turn, a stop ends the wait."""

import pytest

from daydream_luigi.execution import slots


@pytest.fixture
def two_slots(tmp_path):
    return slots.CallSlots(tmp_path / "slots", {"paid": 2, "free": 1})


def test_a_pool_gets_a_luigi_resource_of_its_limit_plus_the_tasks_that_wait_ahead(two_slots):
    assert slots.resources(two_slots.limits) == {"paid": 3, "free": 2}
    assert [slots.ahead(n) for n in (1, 2, 5, 20)] == [1, 1, 2, 10]


def test_a_third_call_waits_for_one_of_two_slots_and_a_stop_ends_the_wait(two_slots):
    waits = []
    with (
        slots.call_slot(two_slots, "paid", lambda: False, waits.append),
        slots.call_slot(two_slots, "paid", lambda: False, waits.append),
    ):
        assert waits == []  # both took a slot at once
        with pytest.raises(slots.StopRequested):
            with slots.call_slot(two_slots, "paid", lambda: True, waits.append):
                pytest.fail("a third call ran beside two")
        assert waits == [True, False]
        with slots.call_slot(two_slots, "free", lambda: True, waits.append):  # another pool has its own slots
            assert waits == [True, False]
    with slots.call_slot(two_slots, "paid", lambda: True, waits.append):  # released: no wait, no stop
        assert waits == [True, False]


def test_without_slots_a_call_is_limited_by_luigi_alone(tmp_path):
    with (
        slots.call_slot(None, "paid", lambda: True, pytest.fail),
        slots.call_slot(None, "paid", lambda: True, pytest.fail),
    ):
        pass
