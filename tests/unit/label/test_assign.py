"""The serving rules: k votes per pair, never twice to one person, leases, gold mixing, recorded random sides,
idempotent votes, active-selection order. Each test fails if its rule is dropped."""

from __future__ import annotations

import random
import threading

import pytest
from label_helpers import simple_pairs

from bridle.label import db
from bridle.label.assign import Rules, VoteRejected, canonical, next_pair, progress, record_vote

K2 = Rules(votes_per_pair=2, gold_rate=0.0)


def people(conn, *names):
    tokens = [db.add_annotator(conn, n) for n in names]
    return [db.annotator_by_token(conn, t).id for t in tokens]


def vote(conn, who, rules, choice="left", key=None):
    shown = next_pair(conn, who, rules)
    if shown is None:
        return None
    record_vote(conn, who, shown.pair_id, choice, key or f"key-{who}-{shown.pair_id}")
    return shown


def test_a_pair_is_served_until_it_has_k_votes(make_db):
    _, conn = make_db(simple_pairs(1), k=2)
    u1, u2, u3 = people(conn, "u1", "u2", "u3")
    assert vote(conn, u1, K2) is not None
    assert vote(conn, u2, K2) is not None
    assert next_pair(conn, u3, K2) is None  # two votes: done
    assert progress(conn, u3, K2).complete == 1


def test_a_shown_pair_holds_its_place_until_the_lease_expires(make_db):
    _, conn = make_db(simple_pairs(1), k=1)
    u1, u2 = people(conn, "u1", "u2")
    rules = Rules(votes_per_pair=1, gold_rate=0.0, lease_seconds=60)
    assert next_pair(conn, u1, rules, now=1000.0) is not None
    assert next_pair(conn, u2, rules, now=1030.0) is None      # u1 holds the only place
    assert next_pair(conn, u2, rules, now=1061.0) is not None  # u1 walked away


def test_no_pair_is_shown_or_voted_twice_by_one_person(make_db):
    _, conn = make_db(simple_pairs(2), k=3)
    (u1,) = people(conn, "u1")
    rules = Rules(votes_per_pair=3, gold_rate=0.0)
    first = next_pair(conn, u1, rules)
    again = next_pair(conn, u1, rules)  # a reload before voting: the same pair, the same sides
    assert (again.pair_id, again.left, again.swapped) == (first.pair_id, first.left, first.swapped)
    record_vote(conn, u1, first.pair_id, "left", "key-one-1")
    second = vote(conn, u1, rules)
    assert second.pair_id != first.pair_id
    assert next_pair(conn, u1, rules) is None
    with pytest.raises(VoteRejected, match="already voted"):
        record_vote(conn, u1, first.pair_id, "right", "key-another")


def test_gold_pairs_are_mixed_in_at_the_gold_rate(make_db):
    _, conn = make_db(simple_pairs(10), simple_pairs(5, gold="a"), k=1)
    (u1,) = people(conn, "u1")
    rules = Rules(votes_per_pair=1, gold_rate=0.25)
    served = [vote(conn, u1, rules) for _ in range(8)]
    assert [i + 1 for i, s in enumerate(served) if s.gold] == [4, 8]  # ⌊0.25 · n⌋ gold among the first n


def test_gold_pairs_go_to_everyone_whatever_k(make_db):
    _, conn = make_db(simple_pairs(4), simple_pairs(1, gold="b"), k=1)
    u1, u2 = people(conn, "u1", "u2")
    rules = Rules(votes_per_pair=1, gold_rate=0.5)
    golds = []
    for who in (u1, u2):
        served = [vote(conn, who, rules) for _ in range(2)]
        golds += [s.pair_id for s in served if s.gold]
    assert len(golds) == 2 and golds[0] == golds[1]


def test_gold_is_not_served_once_no_regular_work_is_left(make_db):
    _, conn = make_db(simple_pairs(1), simple_pairs(3, gold="a"), k=1)
    (u1,) = people(conn, "u1")
    rules = Rules(votes_per_pair=1, gold_rate=0.5)
    assert not vote(conn, u1, rules).gold
    assert next_pair(conn, u1, rules) is None


def test_sides_are_drawn_per_assignment_and_votes_mapped_back(make_db):
    pairs = simple_pairs(40)
    _, conn = make_db(pairs, k=1)
    (u1,) = people(conn, "u1")
    rules = Rules(votes_per_pair=1, gold_rate=0.0)
    rng = random.Random(3)
    swaps = []
    while (shown := next_pair(conn, u1, rules, rng=rng)) is not None:
        pair = pairs[shown.pair_id - 1]
        assert (shown.left, shown.right) == ((pair.response_b, pair.response_a) if shown.swapped
                                             else (pair.response_a, pair.response_b))
        result = record_vote(conn, u1, shown.pair_id, "left", f"key-{shown.pair_id:04d}")
        assert result.choice == ("b" if shown.swapped else "a")  # the response that was on the left
        swaps.append(shown.swapped)
    assert 5 < sum(swaps) < 35  # both orders happen
    stored = conn.execute("SELECT COUNT(*) FROM votes WHERE swapped = 1 AND choice = 'b' AND shown_choice = 'left'")
    assert stored.fetchone()[0] == sum(swaps)


def test_canonical_choice():
    assert [canonical(c, False) for c in ("left", "right", "tie", "both_bad")] == ["a", "b", "tie", "both_bad"]
    assert [canonical(c, True) for c in ("left", "right", "tie", "both_bad")] == ["b", "a", "tie", "both_bad"]


def test_the_same_idempotency_key_records_one_vote(make_db):
    _, conn = make_db(simple_pairs(2), k=1)
    (u1,) = people(conn, "u1")
    rules = Rules(votes_per_pair=1, gold_rate=0.0)
    shown = next_pair(conn, u1, rules)
    first = record_vote(conn, u1, shown.pair_id, "left", "double-click")
    again = record_vote(conn, u1, shown.pair_id, "right", "double-click")  # a retry (even a changed one) is the first
    assert (again.vote_id, again.duplicate, again.choice) == (first.vote_id, True, first.choice)
    assert not first.duplicate
    assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 1
    other = next_pair(conn, u1, rules)
    with pytest.raises(VoteRejected, match="idempotency key was already used"):
        record_vote(conn, u1, other.pair_id, "left", "double-click")


def test_a_vote_needs_the_pair_to_have_been_served(make_db):
    _, conn = make_db(simple_pairs(2), k=1)
    (u1,) = people(conn, "u1")
    with pytest.raises(VoteRejected, match="not served to you"):
        record_vote(conn, u1, 2, "left", "key-unserved")
    with pytest.raises(VoteRejected, match="choice must be"):
        record_vote(conn, u1, 2, "A", "key-unserved")


def test_priority_decides_what_is_served_first(make_db):
    _, conn = make_db(simple_pairs(4), k=1)
    conn.executemany("UPDATE pairs SET priority = ? WHERE id = ?", [(0.4, 1), (0.01, 3), (0.2, 4)])
    (u1,) = people(conn, "u1")
    rules = Rules(votes_per_pair=1, gold_rate=0.0)
    assert [vote(conn, u1, rules).pair_id for _ in range(4)] == [3, 4, 1, 2]  # unset priority last


def test_pairs_under_way_are_finished_first(make_db):
    _, conn = make_db(simple_pairs(3), k=2)
    u1, u2 = people(conn, "u1", "u2")
    vote(conn, u1, K2)  # pair 1 has one vote of two
    conn.execute("UPDATE pairs SET priority = NULL")
    assert next_pair(conn, u2, K2).pair_id == 1


def test_progress_counts_votes_up_to_k(make_db):
    _, conn = make_db(simple_pairs(3), simple_pairs(1, gold="a"), k=2)
    u1, u2 = people(conn, "u1", "u2")
    vote(conn, u1, K2)
    vote(conn, u2, K2)
    p = progress(conn, u1, K2)
    assert (p.yours, p.pairs, p.complete, p.votes, p.needed, p.open_for_you) == (1, 3, 1, 2, 6, 2)


def test_concurrent_requests_never_hand_out_more_than_k_places(make_db):
    path, conn = make_db(simple_pairs(5), k=1)
    ids = people(conn, *[f"u{i}" for i in range(12)])
    rules = Rules(votes_per_pair=1, gold_rate=0.0)
    got, barrier = [], threading.Barrier(len(ids))

    def ask(who: int) -> None:
        own = db.connect(path)
        barrier.wait()
        shown = next_pair(own, who, rules)
        got.append(None if shown is None else shown.pair_id)
        own.close()

    threads = [threading.Thread(target=ask, args=(who,)) for who in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = [g for g in got if g is not None]
    assert sorted(served) == [1, 2, 3, 4, 5]
