"""Congruence: the same vectors in exact, FAISS flat, Milvus Lite and a real Milvus server (FLAT
and HNSW, tests marked ``milvus_server``) give the same top 10.

3,000 seeded unit vectors of dimension 128 in clusters ("people" with several photos each),
some of them stored twice under two ids, as the same photo found in two sources would be: those
tie exactly, and a tie may come back in any order, so ids are compared as sets within a run of
equal similarities (1e-6 apart). Similarities must agree within 1e-4. The server's collections
are sealed and indexed before they are searched, so HNSW answers from its graph, and is held
to recall@10 rather than equality (see APPROXIMATE).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from countenance.index import open_index
from countenance.ports import VectorIndex
from countenance.types import EmbeddingSpace

SPACE = EmbeddingSpace("congruence", "1", 128)
PEOPLE, PHOTOS, TWINS = 300, 10, 100  # 3000 vectors, of which 100 are copies of others
K, TIE, SIM_TOL = 10, 1e-6, 1e-4
KNOWN = 80  # probes of gallery people; 20 strangers follow them
SERVER_INDEX = {"milvus-server-flat": "FLAT", "milvus-server-hnsw": "HNSW"}
BACKENDS = [
    "faiss",
    "milvus",
    *(pytest.param(name, marks=pytest.mark.milvus_server) for name in SERVER_INDEX),
]
# Milvus's HNSW is approximate: in about 1 run in 4 here (some state of the server's segments
# decides it; the same in both tests below) it misses weak matches (cosine ~0.25, far below any
# threshold) that fill a top 10, mostly the strangers' (recall@10 0.82 for them, 0.991 for the
# known probes; otherwise 0.998). It is held to the known probes' recall@10 >= 0.95, as in the
# contract suite, and to exact similarities for what it finds; the others to equality.
APPROXIMATE = {"milvus-server-hnsw"}
# Each group of indexes holds the gallery, its own exact one included: removal changes a group.
GROUPS = ["indexes", pytest.param("server_indexes", marks=pytest.mark.milvus_server)]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gallery() -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors): seeded clustered unit vectors; the last TWINS rows copy earlier ones."""
    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((PEOPLE, SPACE.dim)))
    noise = rng.standard_normal((PEOPLE, PHOTOS, SPACE.dim)) * 0.5 / np.sqrt(SPACE.dim)
    vectors = unit((centres[:, None, :] + noise).reshape(-1, SPACE.dim))
    copied = rng.choice(len(vectors) - TWINS, size=TWINS, replace=False)
    vectors[-TWINS:] = vectors[copied]
    ids = (5 + 11 * rng.permutation(len(vectors))).astype(np.int64)  # sparse, in no order
    return ids, vectors


IDS, VECTORS = gallery()


def queries() -> np.ndarray:
    """100 probes: 80 new photos of gallery people (some of them twins), 20 strangers."""
    rng = np.random.default_rng(8)
    known = VECTORS[rng.choice(len(VECTORS), size=KNOWN, replace=False)]
    known = unit(known + rng.standard_normal(known.shape) * 0.3 / np.sqrt(SPACE.dim))
    return np.concatenate([known, unit(rng.standard_normal((20, SPACE.dim)))])


QUERIES = queries()


def need_milvus() -> None:
    """Skip when Milvus is not installed; under CI a missing backend fails instead."""
    missing = [p for p in ("pymilvus", "milvus_lite") if importlib.util.find_spec(p) is None]
    if missing and os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
        pytest.skip(f"{', '.join(missing)} not installed: pip install 'countenance[milvus]'")


@pytest.fixture(scope="module")
def milvus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_milvus()
    return tmp_path_factory.mktemp("milvus")


def fill(built: dict[str, VectorIndex]) -> dict[str, VectorIndex]:
    """The gallery in each index, added in batches like an ingest would."""
    for index in built.values():
        for start in range(0, len(IDS), 700):
            index.add(IDS[start : start + 700], VECTORS[start : start + 700])
    return built


@pytest.fixture(scope="module")
def indexes(milvus_dir: Path) -> Iterator[dict[str, VectorIndex]]:
    built = {
        "exact": open_index("exact", SPACE),
        "faiss": open_index("faiss", SPACE),
        "milvus": open_index("milvus", SPACE, milvus_dir),
    }
    assert built["faiss"].kind == "flat" and built["milvus"].kind == "milvus-lite,flat"
    yield fill(built)
    built["milvus"].close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server_indexes(milvus_server: str) -> Iterator[dict[str, VectorIndex]]:
    need_milvus()
    servers = {
        name: open_index(
            "milvus",
            SPACE,
            uri=milvus_server,
            index_type=kind,
            collection=f"congruence_{kind.lower()}",
        )
        for name, kind in SERVER_INDEX.items()
    }
    built = fill({"exact": open_index("exact", SPACE), **servers})
    try:
        for name, index in servers.items():
            assert index.kind == f"milvus,{SERVER_INDEX[name].lower()}"
            assert index.wait_indexed() == len(IDS)  # type: ignore[attr-defined]
        yield built
    finally:
        for index in servers.values():
            index.drop()  # type: ignore[attr-defined]


def assert_congruent(
    reference: VectorIndex, other: VectorIndex, queries: np.ndarray, k: int = K
) -> None:
    """``other``'s top k equals ``reference``'s up to the order of tied similarities."""
    # k + 10 from the reference: a tie across the k-th place may be broken either way.
    ref_sims, ref_ids = reference.search(queries, k=k + 10)
    sims, ids = other.search(queries, k=k)
    np.testing.assert_allclose(sims, ref_sims[:, :k], atol=SIM_TOL, rtol=0)
    for q in range(len(queries)):
        for rank in range(k):
            # Everything the reference ranks as equal to this slot (within TIE) may fill it.
            tied = np.abs(ref_sims[q] - ref_sims[q, rank]) <= TIE
            assert ids[q, rank] in set(ref_ids[q, tied].tolist()), (
                f"query {q}, rank {rank}: id {ids[q, rank]} is not among {ref_ids[q, tied]}"
            )
        assert len(set(ids[q].tolist())) == k, f"query {q} repeats an id: {ids[q]}"


def assert_recall(
    reference: VectorIndex, other: VectorIndex, queries: np.ndarray, *, at_least: float
) -> None:
    """``other`` finds at least ``at_least`` of ``reference``'s top K, with its similarities."""
    ref_sims, ref_ids = reference.search(queries, k=K)
    sims, ids = other.search(queries, k=K)
    found = [len(set(r) & set(o)) / K for r, o in zip(ref_ids, ids, strict=True)]
    assert np.mean(found) >= at_least, f"recall@{K} {np.mean(found):.3f} < {at_least}"
    # what it finds carries the exact similarity
    for q in range(len(queries)):
        exact = dict(zip(ref_ids[q].tolist(), ref_sims[q].tolist(), strict=True))
        for i, sim in zip(ids[q].tolist(), sims[q].tolist(), strict=True):
            if i in exact:
                assert abs(sim - exact[i]) <= SIM_TOL, f"query {q}, id {i}: {sim} != {exact[i]}"


def test_the_gallery_has_ties_to_break() -> None:
    # The twins must actually tie within some top 10, or the tie rule would go untested.
    exact = open_index("exact", SPACE)
    exact.add(IDS, VECTORS)
    sims, _ = exact.search(QUERIES, k=K)
    assert (np.abs(np.diff(sims, axis=1)) <= TIE).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_top10_equals_exact(request: pytest.FixtureRequest, backend: str) -> None:
    group = request.getfixturevalue("server_indexes" if backend in SERVER_INDEX else "indexes")
    assert group[backend].count() == len(IDS)
    if backend in APPROXIMATE:
        assert_recall(group["exact"], group[backend], QUERIES[:KNOWN], at_least=0.95)
    else:
        assert_congruent(group["exact"], group[backend], QUERIES)


@pytest.mark.parametrize("group", GROUPS)
def test_top10_equals_exact_after_removal(request: pytest.FixtureRequest, group: str) -> None:
    # The nearest neighbour of every other known probe goes, so that results change where it
    # showed; the same ids from every backend (this changes the module's indexes for good).
    indexes: dict[str, VectorIndex] = request.getfixturevalue(group)
    _, nearest = indexes["exact"].search(QUERIES[:KNOWN:2], k=1)
    gone = np.unique(nearest[:, 0])
    for index in indexes.values():
        assert index.remove(gone) == len(gone)
        assert index.count() == len(IDS) - len(gone)
    for backend, index in indexes.items():
        if backend == "exact":
            continue
        _, ids = index.search(QUERIES, k=K)
        assert not np.isin(gone, ids).any(), backend
        if backend in APPROXIMATE:
            assert_recall(indexes["exact"], index, QUERIES[:KNOWN], at_least=0.95)
        else:
            assert_congruent(indexes["exact"], index, QUERIES)


def test_milvus_lite_keeps_its_data_across_processes(tmp_path: Path) -> None:
    """What one process adds and removes, the next one finds: Milvus Lite logs writes, and
    ``save`` need not have been called (the writer exits without it)."""
    need_milvus()
    writer = textwrap.dedent(
        f"""
        import numpy as np, os, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_milvus_congruence import IDS, SPACE, VECTORS
        from countenance.index import open_index
        index = open_index("milvus", SPACE, Path({str(tmp_path)!r}))
        index.add(IDS, VECTORS)
        index.remove(IDS[:100])
        os._exit(0)  # no save, no clean shutdown
        """
    )
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=120)
    reopened = open_index("milvus", SPACE, tmp_path)
    try:
        assert reopened.count() == len(IDS) - 100
        exact = open_index("exact", SPACE)
        exact.add(IDS[100:], VECTORS[100:])
        assert_congruent(exact, reopened, QUERIES)
    finally:
        reopened.close()  # type: ignore[attr-defined]
