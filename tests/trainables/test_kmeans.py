"""Batched k-means, ARI and NMI against scikit-learn, planted ground truth and their invariances."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from trainables.kmeans import ari_nmi, batched_kmeans


def blobs(n: int, e: int, k: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, e) points around k random centres of scale ``separation`` (unit noise), and the (n,) cluster ids."""
    rng = np.random.default_rng(seed)
    centres = separation * rng.normal(size=(k, e))
    ids = rng.integers(0, k, n)
    return centres[ids] + rng.normal(size=(n, e)), ids


def separated_blobs(n: int, e: int, k: int, gap: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit Gaussian blobs whose centres are ``gap`` apart: the vertices of a scaled simplex (needs e >= k)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(e, k)))[0]  # (e, k) orthonormal
    ids = rng.integers(0, k, n)
    return (gap / math.sqrt(2)) * basis.T[ids] + rng.normal(size=(n, e)), ids


def inertia(x: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of the points to the mean of their cluster."""
    return float(sum(((x[labels == c] - x[labels == c].mean(axis=0)) ** 2).sum() for c in np.unique(labels)))


def sklearn_ari_nmi(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ari = [adjusted_rand_score(t, p) for t, p in zip(true, pred, strict=True)]
    nmi = [normalized_mutual_info_score(t, p) for t, p in zip(true, pred, strict=True)]
    return np.array(ari), np.array(nmi)


# --- ARI and NMI ------------------------------------------------------------------------------


def corner_pairs(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """sklearn's special cases and a few near them, for n samples."""
    zeros, singles = np.zeros(n, dtype=np.int64), np.arange(n)
    some = rng.integers(0, 3, n)
    return [
        (zeros, zeros + 7),  # one cluster each side
        (zeros, singles),  # one cluster against all singletons
        (singles, zeros),
        (singles, singles[::-1] * 5),  # all singletons each side
        (zeros, some),  # one cluster against a few
        (some, zeros),
        (some, some),  # identical
        (some, np.array([9, 4, 6])[some]),  # permuted and renamed
        (singles % 2, (singles + 1) % 2),  # complementary halves
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 40, 500, 3000])
def test_ari_nmi_match_sklearn_on_random_and_corner_cases(n: int) -> None:
    rng = np.random.default_rng(n)
    pairs = corner_pairs(n, rng)
    for _ in range(40):
        k_true, k_pred = rng.integers(1, max(2, min(n, 60)) + 1, 2)
        true = rng.integers(0, k_true, n)
        pred = rng.integers(0, k_pred, n)
        roll = rng.random()
        if roll < 0.2:
            pred = true.copy()
        elif roll < 0.4:  # a relabelling of true, possibly merging some of its labels
            pred = rng.permutation(k_pred + 3)[true % (k_pred + 3)] * 11 + 1000
        elif roll < 0.6:  # true with a few labels flipped
            flip = rng.random(n) < 0.1
            pred = np.where(flip, rng.integers(0, k_true, n), true)
        pairs.append((true, pred))
    true = np.stack([t for t, _ in pairs])
    pred = np.stack([p for _, p in pairs])
    ari, nmi = ari_nmi(torch.from_numpy(true), torch.from_numpy(pred))
    assert ari.dtype == nmi.dtype == torch.float64 and ari.shape == nmi.shape == (len(pairs),)
    ref_ari, ref_nmi = sklearn_ari_nmi(true, pred)
    np.testing.assert_allclose(ari.numpy(), ref_ari, rtol=0, atol=1e-10)
    np.testing.assert_allclose(nmi.numpy(), ref_nmi, rtol=0, atol=1e-10)


def test_ari_nmi_special_values() -> None:
    true = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    pred = torch.tensor([[3, 3, 3, 3], [3, 2, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1], [0, 1, 2, 3]])
    ari, nmi = ari_nmi(true, pred)
    assert ari.tolist() == [1.0, 1.0, 1.0, -0.5, 0.0]
    assert nmi.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    # negative and int32 labels, a row at a time or together
    t = torch.tensor([[-4, -4, 2, 2, 9]], dtype=torch.int32)
    p = torch.tensor([[5, 5, 5, 0, 0]], dtype=torch.int32)
    ari, nmi = ari_nmi(t, p)
    assert ari.item() == pytest.approx(adjusted_rand_score(t[0], p[0]), abs=1e-12)
    assert nmi.item() == pytest.approx(normalized_mutual_info_score(t[0], p[0]), abs=1e-12)
    # no samples: sklearn's 1.0 for both
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert [v.tolist() for v in ari_nmi(empty, empty)] == [[1.0, 1.0], [1.0, 1.0]]


def test_ari_nmi_rows_are_independent() -> None:
    rng = np.random.default_rng(0)
    true = torch.from_numpy(rng.integers(0, 5, (6, 300)))
    pred = torch.from_numpy(rng.integers(0, 8, (6, 300)))
    pred[2] = true[2] * 10**9  # huge labels in one row change nothing in the others
    ari, nmi = ari_nmi(true, pred)
    for k in range(6):
        a, m = ari_nmi(true[k : k + 1], pred[k : k + 1])
        assert a.item() == ari[k].item() and m.item() == nmi[k].item()
    assert ari[2].item() == nmi[2].item() == 1.0


def test_ari_nmi_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        ari_nmi(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError):
        ari_nmi(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long))


# --- k-means: planted truth and sklearn -------------------------------------------------------


def test_kmeans_recovers_separated_blobs_and_not_noise() -> None:
    """16 clusters 20 sigma apart: ARI 1 in every problem of a batch; pure noise: ARI about 0."""
    k, n, e = 16, 2048, 16
    data = [separated_blobs(n, e, k, gap=20.0, seed=s) for s in range(5)]
    z = torch.from_numpy(np.stack([x for x, _ in data]))
    truth = torch.from_numpy(np.stack([ids for _, ids in data]))
    labels = batched_kmeans(z, k, seeds=[0, 1, 2, 3, 4])
    assert labels.shape == (5, n) and labels.dtype == torch.long
    assert labels.min() >= 0 and labels.max() < k
    ari, nmi = ari_nmi(truth, labels)
    assert ari.tolist() == [1.0] * 5
    np.testing.assert_allclose(nmi.numpy(), 1.0, rtol=0, atol=1e-12)  # MI / mean entropy: 1 up to rounding

    noise = torch.from_numpy(np.random.default_rng(9).normal(size=(5, n, e)))
    ari, nmi = ari_nmi(truth, batched_kmeans(noise, k, seeds=[0, 1, 2, 3, 4]))
    assert ari.abs().max() < 0.05 and nmi.max() < 0.05


def test_kmeans_agrees_with_sklearn_where_the_optimum_is_unambiguous() -> None:
    k, n, e = 8, 1000, 6
    data = [blobs(n, e, k, separation=12.0, seed=s) for s in range(4)]
    labels = batched_kmeans(torch.from_numpy(np.stack([x for x, _ in data])), k, seeds=[10, 11, 12, 13])
    for i, (x, _) in enumerate(data):
        ref = KMeans(n_clusters=k, n_init=2, random_state=i).fit_predict(x)
        assert adjusted_rand_score(ref, labels[i].numpy()) == 1.0


@pytest.mark.parametrize("separation", [1.0, 1.5])
def test_kmeans_inertia_on_overlapping_blobs_is_as_good_as_sklearn(separation: float) -> None:
    """Overlapping clusters have many local optima: ours and sklearn's (both n_init=2) within a few percent."""
    k, n, e, problems = 10, 1000, 8, 8
    data = [blobs(n, e, k, separation, seed=100 + s)[0] for s in range(problems)]
    labels = batched_kmeans(torch.from_numpy(np.stack(data)), k, seeds=list(range(problems))).numpy()
    ratio = np.array(
        [
            inertia(x, labels[i]) / KMeans(n_clusters=k, n_init=2, random_state=i).fit(x).inertia_
            for i, x in enumerate(data)
        ]
    )
    assert ratio.max() <= 1.05 and ratio.mean() <= 1.02, ratio


def test_kmeans_converged_labels_are_a_lloyd_fixed_point() -> None:
    """Every point is at its nearest centroid of the returned clustering (strict or tolerance convergence)."""
    x, _ = blobs(800, 5, 6, separation=2.0, seed=3)
    labels = batched_kmeans(torch.from_numpy(x)[None], 6, seeds=[0], tol=0.0)[0].numpy()
    centroids = np.stack([x[labels == c].mean(axis=0) for c in range(6)])
    nearest = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(nearest, labels)


# --- reproducibility and invariances ----------------------------------------------------------


def test_kmeans_problem_alone_equals_problem_in_a_batch() -> None:
    """Problem k depends on z[k] and seeds[k] only: alone (K=1) bit-identical to inside a batch of 5."""
    rng = np.random.default_rng(5)
    batch = np.stack(
        [
            blobs(600, 7, 5, separation=1.5, seed=1)[0],
            rng.normal(size=(600, 7)),  # noise: runs to many more iterations than the others
            separated_blobs(600, 7, 5, gap=30.0, seed=2)[0],
            blobs(600, 7, 5, separation=0.8, seed=3)[0],
            np.repeat(rng.normal(size=(3, 7)), 200, axis=0),  # 3 distinct points for 5 clusters
        ]
    )
    seeds = [7, 8, 9, 10, 11]
    together = batched_kmeans(torch.from_numpy(batch), 5, seeds)
    for k in range(5):
        alone = batched_kmeans(torch.from_numpy(batch[k : k + 1]), 5, [seeds[k]])
        assert torch.equal(alone[0], together[k]), k
    # and the batch order does not matter either
    order = [3, 0, 4, 2, 1]
    shuffled = batched_kmeans(torch.from_numpy(batch[order]), 5, [seeds[i] for i in order])
    assert torch.equal(shuffled, together[order])


def test_kmeans_is_seeded_and_uses_no_global_rng() -> None:
    z = torch.from_numpy(np.stack([blobs(500, 4, 6, separation=1.0, seed=s)[0] for s in range(3)]))
    torch.manual_seed(0)
    first = batched_kmeans(z, 6, [1, 2, 3])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert torch.equal(batched_kmeans(z, 6, [1, 2, 3]), first)
    assert torch.equal(torch.get_rng_state(), state)
    # another seed gives another initialisation, hence (on overlapping blobs) another local optimum somewhere
    assert not torch.equal(batched_kmeans(z, 6, [4, 5, 6]), first)


@pytest.mark.parametrize("e, pad", [(1, 3), (3, 13), (5, 1), (8, 8), (16, 24), (17, 3)])
def test_kmeans_ignores_zero_padded_features(e: int, pad: int) -> None:
    x = np.stack([blobs(700, e, 6, separation=1.0, seed=s)[0] for s in range(3)])
    padded = np.concatenate([x, np.zeros((3, 700, pad))], axis=2)
    seeds = [e, pad, 99]
    assert torch.equal(
        batched_kmeans(torch.from_numpy(x), 6, seeds), batched_kmeans(torch.from_numpy(padded), 6, seeds)
    )


def test_kmeans_in_a_pack_of_different_widths() -> None:
    """A pack's (K, n, E_max) embeddings, row k zero beyond its own width: each row as if fitted alone."""
    dims = [2, 5, 3]
    xs = [blobs(900, d, 4, separation=2.0, seed=d)[0] for d in dims]
    packed = np.zeros((3, 900, max(dims)))
    for i, x in enumerate(xs):
        packed[i, :, : dims[i]] = x
    together = batched_kmeans(torch.from_numpy(packed), 4, [0, 1, 2])
    for i, x in enumerate(xs):
        assert torch.equal(together[i], batched_kmeans(torch.from_numpy(x)[None], 4, [i])[0])


def test_kmeans_is_invariant_to_translation_in_float64() -> None:
    x, _ = blobs(600, 4, 5, separation=1.5, seed=0)
    a = batched_kmeans(torch.from_numpy(x)[None], 5, [0])
    b = batched_kmeans(torch.from_numpy(x + 1e3)[None], 5, [0])
    assert adjusted_rand_score(a[0].numpy(), b[0].numpy()) > 0.99  # centred first, as sklearn


# --- degenerate input -------------------------------------------------------------------------


def test_kmeans_with_fewer_distinct_points_than_clusters() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    z = torch.from_numpy(np.stack([points[np.arange(60) % 3], np.zeros((60, 2))]))
    labels = batched_kmeans(z, 5, [0, 1])
    assert labels.min() >= 0 and labels.max() < 5
    # the 3 distinct points get 3 distinct labels, copies of a point the same one; sklearn agrees
    assert len(set(labels[0].tolist())) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = KMeans(n_clusters=5, n_init=2, random_state=0).fit_predict(z[0].numpy())
    assert adjusted_rand_score(ref, labels[0].numpy()) == 1.0
    assert len(set(labels[1].tolist())) == 1  # all points equal


def test_kmeans_edge_shapes_and_dtypes() -> None:
    z = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(0))  # float32 in, n == n_clusters
    labels = batched_kmeans(z, 7, [0, 1])
    assert [sorted(row.tolist()) for row in labels] == [list(range(7))] * 2  # every point its own cluster
    assert batched_kmeans(z, 1, [0, 1]).eq(0).all()
    assert batched_kmeans(z.double(), 3, [0, 1], n_init=1, max_iter=1).shape == (2, 7)
    assert batched_kmeans(z[:0], 3, []).shape == (0, 7)


@pytest.mark.parametrize(
    "z, n_clusters, seeds",
    [
        (torch.zeros(7, 3), 2, [0]),  # not (K, n, E)
        (torch.zeros(1, 3, 2), 4, [0]),  # fewer samples than clusters
        (torch.zeros(2, 5, 2), 2, [0]),  # one seed for two problems
        (torch.full((1, 5, 2), float("nan")), 2, [0]),
        (torch.zeros(1, 5, 2), 0, [0]),
    ],
)
def test_kmeans_rejects_bad_input(z: torch.Tensor, n_clusters: int, seeds: list[int]) -> None:
    with pytest.raises(ValueError):
        batched_kmeans(z, n_clusters, seeds)


# --- devices and speed ------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kmeans_and_scores_on_cuda_match_cpu() -> None:
    data = [separated_blobs(2048, 16, 16, gap=20.0, seed=s) for s in range(4)]
    z = torch.from_numpy(np.stack([x for x, _ in data]))
    truth = torch.from_numpy(np.stack([ids for _, ids in data]))
    cpu = batched_kmeans(z, 16, [0, 1, 2, 3])
    cuda = batched_kmeans(z.float().cuda(), 16, [0, 1, 2, 3])
    assert cuda.device.type == "cuda"
    ari, nmi = ari_nmi(truth.cuda(), cuda)
    assert ari.device.type == "cuda" and ari.tolist() == [1.0] * 4
    assert ari_nmi(cpu, cuda.cpu())[0].tolist() == [1.0] * 4
    pred = torch.randint(0, 9, (4, 2048), generator=torch.Generator().manual_seed(0))
    for got, ref in zip(ari_nmi(truth.cuda(), pred.cuda()), ari_nmi(truth, pred), strict=True):
        torch.testing.assert_close(got.cpu(), ref, rtol=0, atol=1e-12)


def test_kmeans_timing_against_sklearn() -> None:
    """Prints (pytest -s) the time of K=16, n=2048, E=16, 16 clusters on one CPU thread; asserts nothing on it."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    cases = {
        "noise": rng.normal(size=(16, 2048, 16)),
        "blobs": np.stack([blobs(2048, 16, 16, separation=3.0, seed=s)[0] for s in range(16)]),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines = []
    try:
        for name, x in cases.items():
            z = torch.from_numpy(x)
            batched_kmeans(z[:1], 16, [0])  # warm-up
            start = time.perf_counter()
            batched_kmeans(z, 16, list(range(16)))
            ours = time.perf_counter() - start
            with threadpool_limits(1):
                start = time.perf_counter()
                for k in range(16):
                    KMeans(n_clusters=16, n_init=2, random_state=k).fit(x[k])
                theirs = time.perf_counter() - start
            lines.append(f"{name}: batched_kmeans {ours * 1e3:.0f} ms, 16 sklearn KMeans fits {theirs * 1e3:.0f} ms")
    finally:
        torch.set_num_threads(threads)
    print("\nK=16 n=2048 E=16 16 clusters n_init=2, 1 thread: " + "; ".join(lines))
