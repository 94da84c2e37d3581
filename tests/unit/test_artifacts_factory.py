"""store_from_url picks the implementation from the URL scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.artifacts import ArtifactStoreError, LocalArtifactStore, store_from_url


def test_plain_path_and_file_url_make_local_stores(tmp_path: Path) -> None:
    plain = store_from_url(str(tmp_path / "a"))
    file_url = store_from_url((tmp_path / "b").as_uri())
    assert isinstance(plain, LocalArtifactStore) and plain.root == tmp_path / "a"
    assert isinstance(file_url, LocalArtifactStore) and file_url.root == tmp_path / "b"
    ref = file_url.put_bytes(b"abc")
    assert (tmp_path / "b" / "sha256" / ref.sha256[:2] / ref.sha256).read_bytes() == b"abc"


@pytest.mark.parametrize("url", ["ftp://host/x", "s3:///no-bucket", "file://"])
def test_bad_urls_are_rejected(url: str) -> None:
    with pytest.raises(ArtifactStoreError):
        store_from_url(url)
