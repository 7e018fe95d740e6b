"""The walk over pages, on its own: which pages it asks for and which answers it refuses."""

from __future__ import annotations

import pytest

from etl.errors import PaginationError
from etl.paginator import PageWalk, Pagination


def counted(page: int, total: int, per_page: int = 2) -> Pagination:
    return Pagination(page, -(-total // per_page), total, per_page, False)


def large(page: int, per_page: int = 2) -> Pagination:
    return Pagination(page, None, None, per_page, True)


def ids(*numbers: int) -> list[str]:
    return [f"vmpkg_{n:016d}" for n in numbers]


def test_with_totals_every_page_is_known_after_the_first():
    walk = PageWalk()
    assert walk.start() == [1]
    assert walk.accept(1, counted(1, 7), ids(1, 2)) == [2, 3, 4]
    assert walk.accept(2, counted(2, 7), ids(3, 4)) == []
    assert walk.accept(3, counted(3, 7), ids(5, 6)) == []
    assert not walk.finished
    assert walk.accept(4, counted(4, 7), ids(7)) == []
    assert walk.finished
    assert walk.shown_complete(7) == (True, None)
    assert walk.shown_complete(6) == (False, "saw 6 distinct packages of the 7 Katapult counted")


def test_an_empty_catalogue_is_one_page():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, Pagination(1, 0, 0, 200, False), []) == []
    assert walk.finished
    assert walk.shown_complete(0) == (True, None)


def test_a_large_set_is_walked_until_a_short_page():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, large(1), ids(1, 2)) == [2]
    assert walk.accept(2, large(2), ids(3, 4)) == [3]
    assert walk.accept(3, large(3), ids(5)) == []
    assert walk.finished
    assert walk.shown_complete(5) == (True, None)


def test_a_large_set_with_a_full_last_page_ends_on_an_empty_page():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, large(1), ids(1, 2)) == [2]
    assert walk.accept(2, large(2), []) == []
    assert walk.finished


def test_the_short_page_is_judged_by_the_per_page_the_server_reports():
    walk = PageWalk()
    walk.start()
    # Asked for 200, the server caps at 2: a page of 2 is full, so the walk goes on.
    assert walk.accept(1, large(1, per_page=2), ids(1, 2)) == [2]


def test_total_pages_growing_during_the_walk_adds_pages_but_is_not_shown_complete():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, counted(1, 4), ids(1, 2)) == [2]
    assert walk.accept(2, counted(2, 5), ids(3, 4)) == [3]
    assert walk.accept(3, counted(3, 5), ids(5)) == []
    assert walk.finished
    assert walk.shown_complete(5) == (
        False,
        "Katapult's count changed during the walk: 4 packages in 2 pages on page 1, 5 packages in 3 pages on page 2",
    )


def test_a_total_that_drops_during_the_walk_is_not_shown_complete():
    # A package deleted after page 1 was served: page 2 starts one package later, and one is never seen,
    # yet the walk sees as many distinct ids as the last pages count.
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, counted(1, 6), ids(1, 2)) == [2, 3]
    assert walk.accept(2, counted(2, 5), ids(4, 5)) == []
    assert walk.accept(3, counted(3, 5), ids(6)) == []
    assert walk.finished
    assert walk.shown_complete(5) == (
        False,
        "Katapult's count changed during the walk: 6 packages in 3 pages on page 1, 5 packages in 3 pages on page 2",
    )


def test_totals_that_go_missing_during_the_walk_are_a_change():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, counted(1, 3), ids(1, 2)) == [2]
    assert walk.accept(2, Pagination(2, None, None, 2, True), ids(3)) == []
    assert walk.finished
    assert walk.shown_complete(3) == (
        False,
        "Katapult's count changed during the walk: 3 packages in 2 pages on page 1, "
        "an unknown number of packages in an unknown number of pages on page 2",
    )


def unknown(page: int) -> Pagination:
    """Totals null or left out, and large_set false or left out (absent keys parse as None and False)."""
    return Pagination(page, None, None, 2, False)


def test_missing_totals_are_unknown_and_walked_until_a_short_page():
    # Not a catalogue of one page: that read removed everything after page 1.
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, unknown(1), ids(1, 2)) == [2]
    assert not walk.finished
    assert walk.accept(2, unknown(2), ids(3, 4)) == [3]
    assert walk.accept(3, unknown(3), ids(5)) == []
    assert walk.finished
    assert walk.shown_complete(5) == (True, None)


def test_only_one_of_the_totals_is_unknown_too():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, Pagination(1, None, 5, 2, False), ids(1, 2)) == [2]
    assert walk.accept(2, Pagination(2, None, 5, 2, False), ids(3)) == []
    assert walk.finished


def test_a_page_number_other_than_the_one_asked_for_is_refused():
    walk = PageWalk()
    walk.start()
    walk.accept(1, counted(1, 6), ids(1, 2))
    with pytest.raises(PaginationError, match=r"^asked for page 2, Katapult answered page 1$"):
        walk.accept(2, counted(1, 6), ids(3, 4))


def test_the_same_page_for_every_page_number_is_refused():
    walk = PageWalk()
    walk.start()
    walk.accept(1, large(1), ids(1, 2))
    with pytest.raises(PaginationError, match="page 2 repeats the packages of an earlier page"):
        walk.accept(2, large(2), ids(1, 2))


def test_more_pages_than_the_bound_is_refused():
    walk = PageWalk(max_pages=3)
    walk.start()
    walk.accept(1, large(1), ids(1, 2))
    walk.accept(2, large(2), ids(3, 4))
    walk.accept(3, large(3), ids(5, 6))
    with pytest.raises(PaginationError, match=r"^the walk passed 3 pages without reaching the end$"):
        walk.accept(4, large(4), ids(7, 8))


def test_totals_that_keep_growing_stop_one_page_past_the_first_count():
    walk = PageWalk()
    walk.start()
    assert walk.accept(1, counted(1, 4), ids(1, 2)) == [2]
    assert walk.accept(2, counted(2, 6), ids(3, 4)) == [3]
    assert walk.accept(3, counted(3, 8), ids(5, 6)) == [4]
    with pytest.raises(PaginationError, match=r"^the walk passed 3 pages without reaching the end$"):
        walk.accept(4, counted(4, 10), ids(7, 8))


def test_answers_out_of_order_are_refused():
    walk = PageWalk()
    walk.start()
    walk.accept(1, counted(1, 6), ids(1, 2))
    with pytest.raises(PaginationError, match="page 3 was accepted out of order"):
        walk.accept(3, counted(3, 6), ids(5, 6))


def test_an_unfinished_walk_is_not_complete():
    walk = PageWalk()
    walk.start()
    walk.accept(1, counted(1, 6), ids(1, 2))
    assert walk.shown_complete(2) == (False, "the walk did not reach the last page")
