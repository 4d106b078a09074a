"""The data registry: names, cache, mirrors by sha256, downloads that fail cleanly."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest

from mae_nb.data import registry
from mae_nb.errors import ChecksumError, DatasetNotFoundError, DataUnavailableError

PAYLOAD = b"mae-nb test payload " * 500
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def fake_dataset(
    url: str | None, sha: str | None = DIGEST, size: int | None = len(PAYLOAD)
) -> registry.Dataset:
    return registry.Dataset(
        name="fake-sample",
        title="fake",
        kind="geotiff",
        files=(registry.RemoteFile("fake.tif", url, sha, size),),
        licence="CC0",
        citation="none",
        homepage="https://example.org/fake",
    )


@pytest.fixture
def register(monkeypatch):
    def _register(dataset):
        monkeypatch.setitem(registry.REGISTRY, dataset.name, dataset)
        return dataset

    return _register


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()


def test_unknown_name_suggests_close_ones():
    with pytest.raises(
        DatasetNotFoundError, match=r"unknown dataset 'salinas_a'.*Did you mean 'salinas-a'"
    ):
        registry.get("salinas_a")


def test_every_entry_is_complete():
    for d in registry.REGISTRY.values():
        assert d.files and d.licence and d.citation and d.homepage, d.name
        for f in d.files:
            assert f.url is None or f.url.startswith("https://"), (d.name, f.url)
            assert f.sha256 is None or len(f.sha256) == 64
    assert registry.get("salinas-a").meta["class_ids"] == [1, 10, 11, 12, 13, 14]
    assert (
        registry.get("mae_visualize_vit_large").files[0].url.endswith("mae_visualize_vit_large.pth")
    )


def test_meta_checkpoints_come_from_their_folder_and_say_their_targets():
    demo, full = (
        registry.get("mae_visualize_vit_large"),
        registry.get("mae_pretrain_vit_large_full"),
    )
    assert "/visualize/" in demo.files[0].url and "/pretrain/" in full.files[0].url
    assert demo.meta == {"arch": "mae_vit_large_patch16"}
    assert full.meta == {"arch": "mae_vit_large_patch16", "norm_pix_loss": True}
    assert "not normalized" in demo.description and "norm_pix_loss" in full.description


def test_sizes_read_as_people_write_them():
    assert registry.size_text(None) == "unknown"
    assert registry.size_text(999) == "999 B"
    assert registry.size_text(1000) == "1.0 kB"
    assert registry.size_text(1_234_567) == "1.2 MB"
    assert registry.size_text(1_300_000_000) == "1.3 GB"
    assert registry.size_text(4_000_000_000_000) == "4000.0 GB"


def test_cache_dir_follows_the_environment(cache):
    assert registry.cache_dir() == cache


def test_mirror_is_matched_by_hash_whatever_the_file_name(cache, tmp_path, monkeypatch, register):
    mirror = tmp_path / "usb-stick" / "nested"
    mirror.mkdir(parents=True)
    (mirror / "renamed.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("MAE_NB_DATA_MIRRORS", str(tmp_path / "usb-stick"))
    register(fake_dataset(url=None))
    paths = registry.fetch("fake-sample")
    assert paths["fake.tif"] == mirror / "renamed.bin"
    assert registry.status("fake-sample") == "mirror"


def test_mirror_file_with_wrong_hash_is_never_used(cache, tmp_path, monkeypatch, register):
    (tmp_path / "fake.tif").write_bytes(PAYLOAD[:-1] + b"X")
    monkeypatch.setenv("MAE_NB_DATA_MIRRORS", str(tmp_path))
    register(fake_dataset(url=None))
    with pytest.warns(UserWarning, match="checksum does not match"):
        with pytest.raises(
            DataUnavailableError, match=r"fake-sample.*only inside a larger archive.*example.org"
        ):
            registry.fetch("fake-sample")


def test_download_goes_to_the_cache_and_is_then_found_there(cache, server, register, no_mirrors):
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD)
    register(fake_dataset(url=f"{base}/fake.tif"))
    assert registry.status("fake-sample") == "missing"
    path = registry.fetch("fake-sample", progress=False)["fake.tif"]
    assert path == cache / "downloads" / "fake-sample" / "fake.tif"
    assert path.read_bytes() == PAYLOAD
    assert registry.status("fake-sample") == "cached"


def test_corrupt_cached_file_is_replaced_by_a_fresh_download(cache, server, register, no_mirrors):
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD)
    ds = register(fake_dataset(url=f"{base}/fake.tif"))
    target = registry.cached_path(ds, ds.files[0])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupted")
    assert registry.status("fake-sample") == "missing"
    with pytest.warns(UserWarning, match="downloading it again"):
        path = registry.fetch("fake-sample", progress=False)["fake.tif"]
    assert path.read_bytes() == PAYLOAD


def test_truncated_download_is_never_left_in_the_cache(cache, server, register, no_mirrors):
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    ds = register(fake_dataset(url=f"{base}/fake.tif"))
    with pytest.raises(ChecksumError, match="corrupt or truncated"):
        registry.fetch("fake-sample", progress=False)
    assert not registry.cached_path(ds, ds.files[0]).exists()
    assert not any((cache / "downloads" / "fake-sample").glob("*"))


def test_truncated_download_without_hash_is_caught_by_size(cache, server, register, no_mirrors):
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD[:100])
    ds = register(fake_dataset(url=f"{base}/fake.tif", sha=None))
    with pytest.raises(ChecksumError, match="has 100 bytes, expected 10000"):
        registry.fetch("fake-sample", progress=False)
    assert not registry.cached_path(ds, ds.files[0]).exists()


def test_download_without_published_hash_records_its_sha256_and_checks_it_later(
    cache, server, register, no_mirrors, capsys
):
    """Meta's and Prithvi's files publish no checksum: the first download records its sha256,
    and a cached copy damaged afterwards is no longer used but fetched again."""
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD)
    ds = register(fake_dataset(url=f"{base}/fake.tif", sha=None, size=None))
    path = registry.fetch("fake-sample", progress=False)["fake.tif"]
    record = registry.recorded_sha256_path(path)
    assert record.read_text().split()[0] == DIGEST
    assert "recorded this download's sha256 " + DIGEST in capsys.readouterr().out
    assert registry.status("fake-sample") == "cached"
    path.write_bytes(PAYLOAD[:-1] + b"!")  # same size, damaged after the download
    assert registry.locate("fake-sample") is None
    with pytest.warns(UserWarning, match="downloading it again"):
        again = registry.fetch("fake-sample", progress=False)["fake.tif"]
    assert again.read_bytes() == PAYLOAD and record.read_text().split()[0] == DIGEST
    registry.remove_from_cache("fake-sample")
    assert not record.exists() and not registry.cached_path(ds, ds.files[0]).exists()


def test_fetch_file_gets_one_file_and_refuses_to_download_when_told(
    cache, server, register, no_mirrors
):
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD)
    ds = register(fake_dataset(url=f"{base}/fake.tif"))
    with pytest.raises(DataUnavailableError, match="not cached and downloads are off"):
        registry.fetch_file(ds, ds.files[0], download=False)
    path = registry.fetch_file(ds, ds.files[0], progress=False)
    assert path == registry.cached_path(ds, ds.files[0]) and path.read_bytes() == PAYLOAD
    assert registry.fetch_file(ds, ds.files[0], download=False) == path  # now from the cache


def test_offline_error_names_the_dataset_and_how_to_get_it(cache, register, no_mirrors):
    register(fake_dataset(url="http://127.0.0.1:9/fake.tif"))  # the discard port: nothing listens
    with pytest.raises(DataUnavailableError) as info:
        registry.fetch("fake-sample", progress=False)
    message = str(info.value)
    assert (
        "'fake-sample'" in message
        and "MAE_NB_DATA_MIRRORS" in message
        and "mae-nb data fetch fake-sample" in message
    )


def test_remove_from_cache_leaves_mirrors_alone(cache, tmp_path, monkeypatch, register, server):
    base, www = server
    (www / "fake.tif").write_bytes(PAYLOAD)
    monkeypatch.delenv("MAE_NB_DATA_MIRRORS", raising=False)
    register(fake_dataset(url=f"{base}/fake.tif"))
    registry.fetch("fake-sample", progress=False)
    removed = registry.remove_from_cache("fake-sample")
    assert len(removed) == 1 and not removed[0].exists()


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name", ["landsat7-rgb", "landsat7-olinda", "salinas-a", "bigearthnet-s2-examples"]
)
def test_real_samples_are_found_in_the_mirror_by_hash(name, cache):
    paths = registry.fetch(name, download=False)
    dataset = registry.get(name)
    for f in dataset.files:
        assert paths[f.name].is_file()
        if f.sha256:
            assert registry.sha256sum(paths[f.name]) == f.sha256


# --------------------------------------------------------------------------- the course's MAEs


@pytest.mark.parametrize("name", ["mae_tiny_course_rgb", "mae_tiny_course_6band"])
def test_the_course_models_ship_inside_the_package(name, cache, no_mirrors, capsys):
    """The shipped weights match their registry sha256, come with the config, log and model
    config that made them, are found without a cache or a mirror, and are listed with their
    licence."""
    from mae_nb.cli import main
    from mae_nb.train import is_safetensors

    dataset = registry.get(name)
    assert dataset.kind == "checkpoint" and dataset.meta["packaged"]
    (f,) = dataset.files
    path = registry.PACKAGED_DIR / f.name
    assert registry.sha256sum(path) == f.sha256 and path.stat().st_size == f.size
    assert is_safetensors(path) and f.size <= 10 * 2**20  # no pickle; at most about 10 MB
    for suffix in (".yaml", "_log.csv", ".json"):
        assert (registry.PACKAGED_DIR / f"{name}{suffix}").is_file(), suffix
    assert registry.status(name) == "packaged"
    assert registry.fetch(name, download=False) == {f.name: path}
    assert "public domain" in dataset.licence
    assert main(["data", "list"]) == 0
    (line,) = [r for r in capsys.readouterr().out.splitlines() if r.startswith(f"{name} ")]
    assert line.split()[:2] == [name, "checkpoint"] and " packaged " in line
    assert line.endswith(dataset.licence)
