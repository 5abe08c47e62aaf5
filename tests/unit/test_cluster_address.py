"""Which cluster addresses ingest takes, and how it refuses the rest (no Ray needed)."""

from __future__ import annotations

import pytest

from countenance.cluster import RayPool, cluster_address
from countenance.config import Settings
from countenance.errors import InvalidArgument


@pytest.mark.parametrize(
    "address", ["ray://127.0.0.1:10001", "127.0.0.1:6379", "head.example:6379", "auto"]
)
def test_ray_client_gcs_and_auto_addresses_are_taken(address: str) -> None:
    assert cluster_address(f" {address} ") == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "127.0.0.1",
        "ray://127.0.0.1",
        "http://127.0.0.1:8265",
        "127.0.0.1:0",
        "h:99999",
        "ray://h:1/x",
        ":6379",
    ],
)
def test_anything_else_is_refused_naming_the_forms(address: str) -> None:
    with pytest.raises(InvalidArgument, match=r"ray://HOST:PORT, HOST:PORT or auto"):
        cluster_address(address)


def test_a_negative_worker_count_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="workers must be 0 or more"):
        RayPool("127.0.0.1:6379", -1, Settings())


def test_the_setting_reads_from_the_environment() -> None:
    settings = Settings.from_env({"COUNTENANCE_CLUSTER": "ray://127.0.0.1:10001"})
    assert settings.cluster == "ray://127.0.0.1:10001"


def test_the_workers_get_the_settings_without_credentials() -> None:
    settings = Settings(index_token="root:Milvus", alert_secret="s3cret", model="faceplugin")
    pool = RayPool("127.0.0.1:6379", 2, settings)
    assert pool.settings.index_token is None and pool.settings.alert_secret is None
    assert pool.settings.model == "faceplugin"


def test_credentials_stay_out_of_the_settings_repr() -> None:
    text = repr(Settings(index_token="root:Milvus", alert_secret="s3cret"))
    assert "root:Milvus" not in text and "s3cret" not in text and "index_type" in text
