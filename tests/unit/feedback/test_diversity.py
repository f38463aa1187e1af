"""Near duplicates and clusters for `bridle curate`: shingles and Jaccard worked out by hand, the prefix-filtered
join equal to brute force, keep-best dedup, TF-IDF by hand, k-center on vectors with an obvious answer, the
round-robin spread."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bridle.feedback.diversity import (
    SparseRows,
    dedup,
    jaccard,
    k_center,
    shingles,
    similar_pairs,
    spread,
    tfidf,
    words,
)

HEALTHY = "Give three tips for staying healthy."
HEALTHY_TODAY = "Give three tips for staying healthy today!"


def test_words_are_lower_cased_and_punctuation_free():
    assert words("Give THREE tips, for staying-healthy.") == ["give", "three", "tips", "for", "staying", "healthy"]


def test_shingles_are_word_trigrams_by_hand():
    assert shingles(HEALTHY) == {"give three tips", "three tips for", "tips for staying", "for staying healthy"}
    assert shingles(HEALTHY, 2) == {"give three", "three tips", "tips for", "for staying", "staying healthy"}
    assert shingles("Hello there") == {"hello there"}  # fewer words than n: one shingle of all of them
    assert shingles("?!") == frozenset()
    with pytest.raises(ValueError, match="shingle size"):
        shingles(HEALTHY, 0)


def test_jaccard_of_two_prompts_by_hand():
    # HEALTHY has 4 trigrams; HEALTHY_TODAY has the same 4 plus "staying healthy today": 4 shared / 5 in all
    assert jaccard(shingles(HEALTHY), shingles(HEALTHY_TODAY)) == pytest.approx(4 / 5)
    # bigrams: 5 vs 6 (the 5 plus "healthy today") → 5 / 6
    assert jaccard(shingles(HEALTHY, 2), shingles(HEALTHY_TODAY, 2)) == pytest.approx(5 / 6)
    assert jaccard(frozenset(), frozenset()) == 0.0
    assert jaccard({"a", "b"}, {"c"}) == 0.0


def test_similar_pairs_include_the_threshold_itself_and_nothing_below():
    sets = [shingles(t) for t in (HEALTHY, "Write a haiku about the sea.", HEALTHY_TODAY,
                                  "Write a haiku about the sea at night.")]
    # haiku: 4 trigrams vs those 4 plus "the sea at", "sea at night" → 4 / 6
    assert similar_pairs(sets, 0.8) == [(0, 2, pytest.approx(0.8))]
    assert similar_pairs(sets, 0.6) == [(0, 2, pytest.approx(0.8)), (1, 3, pytest.approx(4 / 6))]
    assert similar_pairs(sets, 0.81) == []
    assert similar_pairs(sets, 1.0) == []
    assert similar_pairs([sets[0], sets[0]], 1.0) == [(0, 1, 1.0)]
    with pytest.raises(ValueError, match="threshold"):
        similar_pairs(sets, 0.0)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("threshold", [0.2, 0.34, 0.5, 0.7, 0.75, 0.9, 1.0])
def test_prefix_filtered_join_equals_brute_force(n, threshold):
    rng = random.Random(n * 100 + int(threshold * 100))
    vocabulary = ["a", "b", "c", "d", "e", "f", "g", "h"]
    base = [[rng.choice(vocabulary) for _ in range(rng.randint(1, 9))] for _ in range(12)]
    texts = [" ".join(w) for w in base]
    for w in base[:8]:  # near copies: one word changed, dropped or added
        edited = list(w)
        edited[rng.randrange(len(edited))] = rng.choice(vocabulary)
        texts += [" ".join(edited), " ".join(w[1:]), " ".join(w + [rng.choice(vocabulary)])]
    sets = [shingles(t, n) for t in texts]
    brute = [(i, j, jaccard(sets[i], sets[j])) for i in range(len(sets)) for j in range(i + 1, len(sets))
             if jaccard(sets[i], sets[j]) >= threshold]
    assert len(brute) > 0
    assert similar_pairs(sets, threshold) == brute


def test_dedup_keeps_the_best_and_drops_what_duplicates_a_kept_row():
    # a chain: 0~1 (0.8), 1~2 (0.75), 0 and 2 not similar
    pairs = [(0, 1, 0.8), (1, 2, 0.75)]
    assert dedup([1, 0, 2], pairs) == {0: (1, 0.8), 2: (1, 0.75)}  # 1 is best: both its neighbours go
    assert dedup([0, 1, 2], pairs) == {1: (0, 0.8)}  # 0 is best: 1 goes, so 2 duplicates nothing kept
    assert dedup([2, 1, 0], pairs) == {1: (2, 0.75)}
    # a row similar to two kept rows names the more similar one
    assert dedup([0, 1, 2], [(0, 2, 0.7), (1, 2, 0.9)]) == {2: (1, 0.9)}


def test_tfidf_by_hand():
    # "a b", "a c": df(a) = 2, df(b) = df(c) = 1; idf = ln(3 / (1 + df)) + 1 → a: 1, b and c: ln(1.5) + 1
    vectors = tfidf(["a b", "a c"])
    idf_b = math.log(1.5) + 1
    norm = math.sqrt(1 + idf_b ** 2)
    assert vectors.dense_row(0) == pytest.approx([1 / norm, idf_b / norm, 0.0])  # vocabulary sorted: a, b, c
    assert vectors.dense_row(1) == pytest.approx([1 / norm, 0.0, idf_b / norm])
    assert vectors.dot(0) == pytest.approx([1.0, 1 / norm ** 2])
    assert tfidf(["a a b"]).dense_row(0) == pytest.approx(np.array([2, 1]) / math.sqrt(5))  # tf is the count


def test_dot_of_sparse_rows_equals_dense_cosines_with_empty_rows():
    dense = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    rows = SparseRows.from_dense(dense)
    unit = dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-30)
    for i in range(4):
        assert rows.dot(i) == pytest.approx(unit @ unit[i])


def two_groups() -> SparseRows:
    """Rows 0, 1 point along x (nearly), rows 2, 3 along y: two obvious clusters."""
    return SparseRows.from_dense(np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]))


@pytest.mark.parametrize("seed", [0, 1, 4, 11])  # first centers 3, 1, 2, 0
def test_k_center_finds_the_two_obvious_clusters_from_any_first_center(seed):
    centers, cluster = k_center(two_groups(), 2, seed=seed)
    first = int(np.random.default_rng(seed).integers(4))
    assert centers[0] == first
    assert (cluster[0] == cluster[1]) and (cluster[2] == cluster[3]) and cluster[0] != cluster[2]
    # the second center is the row farthest from the first. Unit rows: 0 = (1, 0), 1 ≈ (0.995, 0.0995),
    # 2 = (0, 1), 3 ≈ (0.0995, 0.995). From 0: 2 at distance 1, 3 at 0.90; from 1: 2 at 0.90, 3 at 0.80.
    assert centers[1] == {0: 2, 1: 2, 2: 0, 3: 0}[first]


def test_k_center_with_one_cluster_puts_everything_together_and_stops_at_duplicates():
    assert k_center(two_groups(), 1, seed=0)[1].tolist() == [0, 0, 0, 0]
    same = SparseRows.from_dense(np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]]))
    centers, cluster = k_center(same, 3, seed=0)
    assert len(centers) == 1 and cluster.tolist() == [0, 0, 0]  # no row is farther than 0 from the first center


def test_spread_takes_one_per_cluster_per_round_best_first():
    cluster = [0, 0, 0, 1, 1, 2]
    order = [0, 1, 2, 3, 4, 5]  # best first
    # round 1: the heads 0 (cluster 0), 3 (cluster 1), 5 (cluster 2); round 2: heads 1 and 4, 1 ranks better
    assert spread(order, cluster, 4) == [0, 3, 5, 1]
    assert spread(order, cluster, 2) == [0, 3]  # a partial round: the best heads
    assert spread(order, cluster, 10) == [0, 3, 5, 1, 4, 2]
    assert spread(order, [0] * 6, 3) == [0, 1, 2]  # one cluster: the best overall
    assert spread([5, 4, 3, 2, 1, 0], cluster, 3) == [5, 4, 2]
