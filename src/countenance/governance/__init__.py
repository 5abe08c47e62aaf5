"""Governance: the controls that sit in the write and read paths (audit, policy, erasure).

Example::

    from countenance.governance.audit import AuditLog

    audit = AuditLog(catalog_engine)
    assert audit.verify().ok
"""
