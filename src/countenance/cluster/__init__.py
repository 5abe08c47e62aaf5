"""Ingest on a distributed engine: the per-photo analysis of :mod:`countenance.ingest` on a Ray
cluster, with everything else where a local ingest has it.

The driver (the process running ``countenance ingest --cluster ADDRESS``) reads, screens and
stores exactly as a local ingest does; only the analysis (decode, detect, align, embed, quality)
runs on the cluster, in a pool of Ray actors that each load the models once. So the photos,
faces, persons and audit events of an ingest are the same wherever its analysis ran, and a
killed worker or driver is recovered from the same way (see :mod:`countenance.cluster.actors`).

Example::

    with RayPool("127.0.0.1:6379", workers=2, settings=settings) as pool:
        for tag, analysis in pool.analyses(jobs):
            ...
"""

from countenance.cluster.actors import RayPool, cluster_address

__all__ = ["RayPool", "cluster_address"]
