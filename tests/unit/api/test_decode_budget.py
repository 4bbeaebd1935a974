"""The decode memory budget: bytes held at once never pass the total, waiters are served in order."""

from __future__ import annotations

import anyio
import pytest

from api.edge.decode_budget import DecodeBudget, release_memory


def test_holds_never_pass_the_total_and_are_granted_first_come_first_served() -> None:
    budget = DecodeBudget(100)
    entered: list[tuple[str, int]] = []

    async def job(name: str, amount: int, hold_s: float) -> None:
        async with budget.hold(amount):
            entered.append((name, budget.in_use))
            assert budget.in_use <= budget.total
            await anyio.sleep(hold_s)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(job, "a", 60, 0.2)
            await anyio.sleep(0.01)
            group.start_soon(job, "b", 60, 0.1)  # waits for a
            await anyio.sleep(0.01)
            group.start_soon(job, "c", 30, 0.1)  # would fit beside a, but b came first

    anyio.run(main)
    assert entered == [("a", 60), ("b", 90), ("c", 90)]
    assert budget.in_use == 0


def test_a_cancelled_waiter_leaves_the_line_and_frees_nothing_it_never_held() -> None:
    budget = DecodeBudget(100)

    async def main() -> None:
        async with budget.hold(80):
            with anyio.move_on_after(0.05):
                async with budget.hold(50):
                    raise AssertionError("granted past the total")
            assert budget.in_use == 80
        async with budget.hold(100):
            assert budget.in_use == 100

    anyio.run(main)
    assert budget.in_use == 0


def test_more_than_the_whole_budget_is_refused_at_once() -> None:
    async def main() -> None:
        async with DecodeBudget(100).hold(101):
            pass

    with pytest.raises(ValueError, match="more than the whole budget"):
        anyio.run(main)


def test_release_memory_runs() -> None:
    release_memory()  # glibc here; a no-op where the C library has no malloc_trim
