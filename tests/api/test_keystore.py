"""The key store on both catalog backends: keys are checked by hash, revoked keys refused,
and creating or revoking one is audited."""

from __future__ import annotations

import pytest

from countenance.catalog.keys import key_hash
from countenance.catalog.sql import SqlCatalog
from countenance.errors import InvalidArgument, NotFound


def test_create_authenticate_revoke(catalog_url: str) -> None:
    catalog = SqlCatalog.open(catalog_url)
    try:
        audit = catalog.audit_log()
        store = catalog.key_store(audit)
        key, info = store.create("alice", "investigator", actor="admin")
        assert key.startswith("cnt_") and len(key) == 47
        assert (info.name, info.role, info.revoked_at) == ("alice", "investigator", None)
        found = store.authenticate(key)
        assert found is not None and found.name == "alice"
        assert store.get("alice").last_used_at is not None
        assert store.authenticate(key + "x") is None
        assert store.authenticate("not-a-key") is None
        assert store.live(info.id) is not None
        with pytest.raises(InvalidArgument):
            store.create("alice", "admin", actor="admin")
        with pytest.raises(InvalidArgument):
            store.create("bob", "root", actor="admin")
        assert store.active_admins() == 0
        store.revoke("alice", actor="dpo")
        assert store.authenticate(key) is None and store.live(info.id) is None
        with pytest.raises(InvalidArgument):
            store.revoke("alice", actor="dpo")
        with pytest.raises(NotFound):
            store.revoke("nobody", actor="dpo")
        events = [(e.actor, e.details["op"]) for e in audit.events(action="key")]
        assert events == [("admin", "create"), ("dpo", "revoke")]
        assert audit.verify().ok
        assert key_hash(key) != key and len(key_hash(key)) == 64
    finally:
        catalog.close()
