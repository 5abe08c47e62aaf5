"""Settings: defaults, descriptions, environment, TOML, overrides and coercion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.errors import CountenanceError, InvalidArgument


def write_toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "countenance.toml"
    path.write_text(text, encoding="utf-8")
    return {"COUNTENANCE_CONFIG": str(path)}


def test_defaults() -> None:
    s = Settings()
    assert s.data_dir == Path("countenance-data")
    assert s.catalog_url is None
    assert s.index_backend == "faiss"
    assert s.workers == 0
    assert s.top == 10
    assert s.cnn_fallback is True
    assert s.detector == "auto"
    assert s.max_file_bytes == 64 * 1024 * 1024


def test_from_env_with_empty_environ_is_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_does_not_read_process_env_when_environ_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COUNTENANCE_WORKERS", "7")
    assert Settings.from_env({}).workers == 0
    assert Settings.from_env().workers == 7


def test_every_setting_has_a_description() -> None:
    described = Settings().describe()
    assert set(described) == {f.name for f in dataclasses.fields(Settings)}
    for name, text in described.items():
        assert isinstance(text, str) and text.strip(), name


def test_env_overrides_default() -> None:
    s = Settings.from_env({"COUNTENANCE_WORKERS": "3"})
    assert s.workers == 3
    assert isinstance(s.workers, int)


def test_env_floats_and_strings() -> None:
    s = Settings.from_env(
        {
            "COUNTENANCE_TARGET_RECALL": "0.9",
            "COUNTENANCE_INDEX_BACKEND": "exact",
            "COUNTENANCE_CATALOG_URL": "sqlite:///x.db",
        }
    )
    assert s.target_recall == pytest.approx(0.9)
    assert isinstance(s.target_recall, float)
    assert s.index_backend == "exact"
    assert s.catalog_url == "sqlite:///x.db"


def test_unrelated_env_variables_are_ignored() -> None:
    s = Settings.from_env({"COUNTENANCE_NO_SUCH_THING": "1", "WORKERS": "5"})
    assert s == Settings()


def test_overrides_beat_env() -> None:
    s = Settings.from_env({"COUNTENANCE_WORKERS": "3"}, workers=5)
    assert s.workers == 5


def test_none_overrides_are_ignored() -> None:
    s = Settings.from_env({"COUNTENANCE_WORKERS": "3"}, workers=None, data_dir=None)
    assert s.workers == 3
    assert s.data_dir == Path("countenance-data")


def test_toml_file_applies(tmp_path: Path) -> None:
    env = write_toml(
        tmp_path,
        '[countenance]\nworkers = 4\ndata_dir = "from-toml"\ncnn_fallback = false\n'
        "[other]\nworkers = 99\n",
    )
    s = Settings.from_env(env)
    assert s.workers == 4
    assert s.data_dir == Path("from-toml")
    assert s.cnn_fallback is False


def test_toml_without_countenance_table_is_the_defaults(tmp_path: Path) -> None:
    env = write_toml(tmp_path, "[other]\nworkers = 99\n")
    assert Settings.from_env(env) == Settings()


def test_precedence_toml_then_env_then_overrides(tmp_path: Path) -> None:
    env = write_toml(tmp_path, "[countenance]\nworkers = 4\ntop = 20\ndetector = 'cnn'\n")
    env["COUNTENANCE_WORKERS"] = "6"
    env["COUNTENANCE_TOP"] = "30"
    s = Settings.from_env(env, top=40)
    assert s.detector == "cnn"  # TOML only
    assert s.workers == 6  # env beats TOML
    assert s.top == 40  # overrides beat env


def test_unknown_key_in_toml_is_invalid(tmp_path: Path) -> None:
    env = write_toml(tmp_path, "[countenance]\nwrokers = 4\n")
    with pytest.raises(InvalidArgument, match="wrokers"):
        Settings.from_env(env)


def test_unknown_override_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="no_such"):
        Settings.from_env({}, no_such=1)


@pytest.mark.parametrize("raw", ["three", "3.5", ""])
def test_bad_int_is_invalid(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="workers"):
        Settings.from_env({"COUNTENANCE_WORKERS": raw})


def test_bad_float_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="target_recall"):
        Settings.from_env({"COUNTENANCE_TARGET_RECALL": "high"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("1", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_bool_parsing(raw: str, expected: bool) -> None:
    s = Settings.from_env({"COUNTENANCE_CNN_FALLBACK": raw})
    assert s.cnn_fallback is expected


def test_unrecognised_bool_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="cnn_fallback"):
        Settings.from_env({"COUNTENANCE_CNN_FALLBACK": "ture"})


def test_data_dir_becomes_a_path() -> None:
    from_env = Settings.from_env({"COUNTENANCE_DATA_DIR": "some/where"})
    assert isinstance(from_env.data_dir, Path)
    assert from_env.data_dir == Path("some/where")
    from_override = Settings.from_env({}, data_dir="else")
    assert isinstance(from_override.data_dir, Path)
    assert from_override.data_dir == Path("else")


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 2  # type: ignore[misc]
    assert s.workers == 0


def test_replace_returns_a_changed_copy() -> None:
    s = Settings()
    t = s.replace(workers=2, top=5)
    assert (t.workers, t.top) == (2, 5)
    assert (s.workers, s.top) == (0, 10)
    assert t.data_dir == s.data_dir
    with pytest.raises(TypeError):
        s.replace(no_such=1)


def test_missing_config_file_is_a_countenance_error(tmp_path: Path) -> None:
    with pytest.raises(CountenanceError):
        Settings.from_env({"COUNTENANCE_CONFIG": str(tmp_path / "absent.toml")})


def test_countenance_data_names_the_data_dir_as_in_the_cli() -> None:
    from pathlib import Path

    from countenance.config import Settings

    assert Settings.from_env({"COUNTENANCE_DATA": "/srv/faces"}).data_dir == Path("/srv/faces")
    assert Settings.from_env({"COUNTENANCE_DATA": "/a"}, data_dir="/b").data_dir == Path("/b")
