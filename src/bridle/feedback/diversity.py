"""Near-duplicate removal and prompt clustering for data curation: pure functions on texts, numpy only.

- Near duplicates: Jaccard similarity of word n-gram shingle sets, J(a, b) = |a ∩ b| / |a ∪ b|. All pairs with
  J ≥ t are found exactly (not estimated, as MinHash would) by prefix filtering (AllPairs, Bayardo et al. 2007):
  with shingles in one global order, rarest first, two sets with J ≥ t must share a shingle within the first
  |x| − ⌈t·|x|⌉ + 1 of each, so only those prefixes are indexed and each candidate is checked exactly.
- Dedup: rows in quality order (best first); a row is kept unless it is a near duplicate of a row already kept.
- Clusters: TF-IDF vectors of the words (smooth idf, L2-normalized, held sparse), k-center greedy (farthest-first,
  Gonzalez 1985) under cosine distance, each row in the cluster of its nearest center.
- Spread: round robin over the clusters, each cluster giving its best remaining row per round, until `size`.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")


# ---- shingles and Jaccard ------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore; any script)."""
    return _WORD.findall(text.lower())


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """The set of word n-grams of `text`; a text of fewer than n words is one shingle (its words); empty → empty."""
    if n < 1:
        raise ValueError(f"shingle size must be >= 1, got {n}")
    tokens = words(text)
    if len(tokens) <= n:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 0.0 when both are empty (two texts without words are not evidence of a copy)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _prefix_length(size: int, threshold: float) -> int:
    """How many of a set's rarest shingles any set with J ≥ threshold must share one of."""
    return size - math.ceil(threshold * size - 1e-9) + 1


def similar_pairs(sets: Sequence[frozenset[str]], threshold: float) -> list[tuple[int, int, float]]:
    """Every pair (i, j, J) with i < j and J(sets[i], sets[j]) ≥ threshold, exactly, by prefix filtering."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"Jaccard threshold must be in (0, 1], got {threshold}")
    frequency = Counter(s for shingle_set in sets for s in shingle_set)
    index: dict[str, list[int]] = defaultdict(list)
    pairs = []
    for j, shingle_set in enumerate(sets):
        if not shingle_set:
            continue
        ordered = sorted(shingle_set, key=lambda s: (frequency[s], s))  # the one global order: rarest first
        candidates: set[int] = set()
        for s in ordered[:_prefix_length(len(ordered), threshold)]:
            candidates.update(index[s])
            index[s].append(j)
        for i in sorted(candidates):
            similarity = jaccard(sets[i], shingle_set)
            if similarity >= threshold:
                pairs.append((i, j, similarity))
    return sorted(pairs)


def dedup(order: Sequence[int], pairs: Sequence[tuple[int, int, float]]) -> dict[int, tuple[int, float]]:
    """Greedy keep-best: walk `order` (best first); a row similar to an already kept row is dropped.

    Returns {dropped row: (the kept row it duplicates, their Jaccard)}, the most similar kept row when several."""
    neighbours: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for i, j, similarity in pairs:
        neighbours[i].append((j, similarity))
        neighbours[j].append((i, similarity))
    kept: set[int] = set()
    dropped: dict[int, tuple[int, float]] = {}
    for row in order:
        matches = [(similarity, -other, other) for other, similarity in neighbours[row] if other in kept]
        if matches:
            similarity, _, other = max(matches)
            dropped[row] = (other, similarity)
        else:
            kept.add(row)
    return dropped


# ---- TF-IDF vectors ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SparseRows:
    """Row vectors in CSR form (row i's entries are indices/data[indptr[i]:indptr[i+1]]), rows L2-normalized."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_features: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def dense_row(self, i: int) -> np.ndarray:
        row = np.zeros(self.n_features)
        row[self.indices[self.indptr[i]:self.indptr[i + 1]]] = self.data[self.indptr[i]:self.indptr[i + 1]]
        return row

    def dot(self, i: int) -> np.ndarray:
        """The dot product of every row with row i, shape (n_rows,): cosine similarity, rows being unit length."""
        row_of_entry = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        products = self.data * self.dense_row(i)[self.indices]
        return np.bincount(row_of_entry, weights=products, minlength=self.n_rows)

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> SparseRows:
        """Rows of a dense (N, D) array, L2-normalized (zero rows stay zero)."""
        matrix = np.asarray(matrix, dtype=float)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        rows, cols = np.nonzero(matrix)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(matrix)))])
        return cls(indptr, cols, matrix[rows, cols], matrix.shape[1])


def tfidf(texts: Sequence[str]) -> SparseRows:
    """TF-IDF of each text's words: tf = count, idf = ln((1 + N) / (1 + df)) + 1, rows L2-normalized."""
    counts = [Counter(words(t)) for t in texts]
    df = Counter(w for c in counts for w in c)
    vocabulary = {w: k for k, w in enumerate(sorted(df))}
    idf = {w: math.log((1 + len(texts)) / (1 + n)) + 1.0 for w, n in df.items()}
    indptr, indices, data = [0], [], []
    for c in counts:
        weights = {vocabulary[w]: n * idf[w] for w, n in c.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        for k in sorted(weights):
            indices.append(k)
            data.append(weights[k] / norm)
        indptr.append(len(indices))
    return SparseRows(np.array(indptr), np.array(indices, dtype=np.int64), np.array(data, dtype=float),
                      len(vocabulary))


# ---- clusters and the spread ---------------------------------------------------------------------------------

def k_center(vectors: SparseRows, k: int, *, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """(centers, cluster of each row): farthest-first traversal under cosine distance 1 − cos, the first center
    drawn with `seed`. Each row joins its nearest center (the earliest on ties). Stops early when every row
    coincides with a center."""
    n = vectors.n_rows
    if n == 0:
        return [], np.zeros(0, dtype=int)
    if k < 1:
        raise ValueError(f"cluster count must be >= 1, got {k}")
    first = int(np.random.default_rng(seed).integers(n))
    centers = [first]
    distance = 1.0 - vectors.dot(first)
    cluster = np.zeros(n, dtype=int)
    while len(centers) < min(k, n):
        far = int(np.argmax(distance))  # the lowest index among the farthest
        if distance[far] <= 1e-12:
            break
        centers.append(far)
        new = 1.0 - vectors.dot(far)
        closer = new < distance - 1e-12
        cluster[closer] = len(centers) - 1
        distance = np.where(closer, new, distance)
        distance[far] = 0.0
        cluster[far] = len(centers) - 1
    return centers, cluster


def spread(order: Sequence[int], cluster: Sequence[int] | np.ndarray, size: int) -> list[int]:
    """Up to `size` rows of `order` (best first), in rounds: each round every cluster with rows left gives its
    best remaining row, clusters taken by the rank of that row, until `size` are picked. Returns them in pick
    order."""
    queues: dict[int, list[int]] = defaultdict(list)
    for row in order:
        queues[int(cluster[row])].append(row)
    rank = {row: r for r, row in enumerate(order)}
    heads = dict.fromkeys(queues, 0)
    picked: list[int] = []
    while len(picked) < size:
        ready = sorted((queues[c][h] for c, h in heads.items() if h < len(queues[c])), key=rank.__getitem__)
        if not ready:
            break
        for row in ready[:size - len(picked)]:
            picked.append(row)
            heads[int(cluster[row])] += 1
    return picked
