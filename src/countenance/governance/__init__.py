"""Governance: the controls that sit in the write and read paths (audit, policy, erasure).

Example::

    from countenance.catalog.audit import AuditLog

    audit = AuditLog(catalog_engine)
    assert audit.verify().ok
"""
