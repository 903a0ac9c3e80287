"""Where the lake's bytes live: a local folder or an S3 bucket (boto3, any S3-compatible endpoint).

An object store holds bytes under keys relative to the lake root (POSIX separators) and knows
nothing of partitions or Parquet. :func:`open_store` picks the store a lake URI names; the
lake (:mod:`storage.lake.dataset`) decides what to put where (:mod:`storage.lake.layout`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from storage.lake.errors import LakeError, LakeUnreachable

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_MD5_RE = re.compile(r"[0-9a-f]{32}")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_T = TypeVar("_T")


@dataclass(frozen=True)
class StoredObject:
    """One object of a store: its ``key`` (relative to the lake root) and, on S3, its ``etag``."""

    key: str
    etag: str | None


class ObjectStore(Protocol):
    """Bytes under keys relative to the lake root (POSIX separators)."""

    def scan(self, prefix: str, name: str) -> list[StoredObject]:
        """The objects under ``prefix`` whose last key segment is ``name``, sorted by key."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``; None when there is no such object."""
        ...

    def exists(self, key: str) -> bool:
        """True when there is an object under ``key`` (without reading it)."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens when it does not exist)."""
        ...

    def same(self, obj: StoredObject, data: bytes) -> bool:
        """True when ``obj`` holds exactly ``data``."""
        ...


class LocalStore:
    """A folder; writes go to a hidden temporary file in the target folder, then are renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _check_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise LakeError(f"lake path {self.root} is a file, not a folder; fix FKS_LAKE_URI")

    def scan(self, prefix: str, name: str) -> list[StoredObject]:
        """The files called ``name`` below ``prefix``, sorted by key.

        Raises:
            LakeError: when the lake root is a file.
        """
        self._check_root()
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for folder, _dirs, files in os.walk(base):
            for file in files:
                if file == name:
                    found.append(StoredObject((Path(folder) / file).relative_to(self.root).as_posix(), None))
        return sorted(found, key=lambda o: o.key)

    def get(self, key: str) -> bytes | None:
        """The file's bytes; None when it does not exist."""
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        """True when the file exists."""
        return (self.root / key).is_file()

    def put(self, key: str, data: bytes) -> None:
        """Write the file atomically (temporary file, fsync, rename, fsync of its folder), creating
        its folders.

        Raises:
            LakeError: when the lake root is a file.
        """
        self._check_root()
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_folder(target.parent)

    def delete(self, key: str) -> None:
        """Remove the file and the folders it leaves empty (never the root)."""
        target = self.root / key
        target.unlink(missing_ok=True)
        folder = target.parent
        while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def same(self, obj: StoredObject, data: bytes) -> bool:
        """True when the file holds exactly ``data``."""
        path = self.root / obj.key
        try:
            return path.stat().st_size == len(data) and path.read_bytes() == data
        except FileNotFoundError:
            return False


class S3Store:
    """A bucket and key prefix through a boto3 S3 client; errors become :class:`LakeError`."""

    def __init__(self, client: Any, bucket: str, prefix: str, uri: str, endpoint_url: str | None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.uri = uri
        self.endpoint = endpoint_url or "the default AWS endpoint"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except Exception as exc:
            raise self._translate(what, exc) from exc

    def _translate(self, what: str, exc: Exception) -> Exception:
        from botocore import exceptions as bex

        if isinstance(exc, bex.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return LakeError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}: create it "
                    f"(e.g. `aws s3 mb s3://{self.bucket}`) or fix FKS_LAKE_URI ({self.uri})"
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return LakeError(
                    f"S3 refused to {what} in bucket {self.bucket!r} ({code}): check the credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy"
                )
            return exc
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return LakeError(
                f"no AWS credentials to {what} in s3://{self.bucket}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ReadTimeoutError):
            return LakeUnreachable(
                f"cannot reach S3 at {self.endpoint} to {what}: {exc}; check FKS_S3_ENDPOINT_URL "
                "and that the server is running"
            )
        if isinstance(exc, bex.ParamValidationError):
            return LakeError(f"invalid S3 request to {what}: {exc}; check FKS_LAKE_URI ({self.uri})")
        return exc

    def scan(self, prefix: str, name: str) -> list[StoredObject]:
        """The objects called ``name`` below ``prefix``, with their ETags, sorted by key.

        Raises:
            LakeError: for a missing bucket, refused or missing credentials (LakeUnreachable
                when the endpoint cannot be reached).
        """
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0

        def run() -> list[StoredObject]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            return [
                StoredObject(item["Key"][strip:], item.get("ETag"))
                for page in pages
                for item in page.get("Contents", [])
                if item["Key"].endswith("/" + name)
            ]

        return sorted(self._call("list objects", run), key=lambda o: o.key)

    def get(self, key: str) -> bytes | None:
        """The object's bytes; None when there is no such key. Raises LakeError as :meth:`scan`."""

        def run() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                return None
            return bytes(response["Body"].read())

        return self._call(f"read {key}", run)

    def exists(self, key: str) -> bool:
        """True when the object exists (a HEAD request). Raises LakeError as :meth:`scan`."""
        from botocore.exceptions import ClientError

        def run() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

        return self._call(f"look up {key}", run)

    def put(self, key: str, data: bytes) -> None:
        """Upload ``data`` with its Content-MD5 (S3 checks it). Raises LakeError as :meth:`scan`."""
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
        self._call(
            f"write {key}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentMD5=md5,
                ContentType="application/vnd.apache.parquet",
            ),
        )

    def delete(self, key: str) -> None:
        """Delete the object. Raises LakeError as :meth:`scan`."""
        self._call(f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def same(self, obj: StoredObject, data: bytes) -> bool:
        """True when the object holds ``data``: by its ETag when that is an MD5, else by its bytes."""
        etag = (obj.etag or "").strip('"').lower()
        if _MD5_RE.fullmatch(etag):  # a single-part upload: the ETag is the MD5 of the bytes
            return etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
        return self.get(obj.key) == data  # multipart or encrypted object: compare the bytes


def open_store(uri: str, endpoint_url: str | None = None) -> tuple[ObjectStore, str]:
    """The object store that ``uri`` names (``file://PATH``, a bare local path, or
    ``s3://BUCKET[/PREFIX]``) and the lake URI to show for it.

    A relative local path is resolved against the working directory now and shown as
    ``file:///absolute/path``. ``endpoint_url`` is the S3 endpoint (``None`` = boto3's default).
    Nothing is read or connected here.

    Raises:
        LakeError: for another scheme (the message lists ``file://`` and ``s3://``), an empty
            path, or a missing or invalid bucket name.
    """
    text = str(uri).strip()
    if not text:
        raise LakeError("the lake URI is empty: set FKS_LAKE_URI to file://PATH or s3://BUCKET/PREFIX")
    if text.startswith("s3://"):
        return _open_s3(text, endpoint_url)
    if text.startswith("file://"):
        path = text.removeprefix("file://")
        if not path:
            raise LakeError(f"lake URI {uri!r} names no folder; e.g. file://data/lake")
        return _open_local(path)
    if has_scheme(text):
        scheme = text.split("://", 1)[0]
        raise LakeError(
            f"lake URI {uri!r} has scheme {scheme}://, which FKS cannot use: use file://PATH for a local "
            "folder or s3://BUCKET/PREFIX for S3 and S3-compatible stores (set FKS_S3_ENDPOINT_URL for MinIO)"
        )
    return _open_local(text)


def has_scheme(text: str) -> bool:
    """True when ``text`` starts with a URI scheme (``file://``, ``s3://``, ``gs://``, ...)."""
    return _SCHEME_RE.match(text) is not None


def open_object(uri: str, endpoint_url: str | None = None) -> tuple[ObjectStore, str]:
    """The store holding the object a full URI names (``file:///folder/name`` or
    ``s3://BUCKET/KEY``) and the object's key in it, so that ``store.get(key)`` reads it.

    Nothing is read or connected here.

    Raises:
        LakeError: for a URI without a scheme or object name, another scheme (the message lists
            ``file://`` and ``s3://``), or an invalid bucket name.
    """
    text = str(uri).strip()
    parent, _, name = text.rpartition("/")
    if not has_scheme(parent) or not name:
        raise LakeError(f"{uri!r} is not the full URI of an object: use file:///PATH or s3://BUCKET/KEY")
    store, _ = open_store(parent, endpoint_url)
    return store, name


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_local(path: str) -> tuple[ObjectStore, str]:
    """A local store; its URI is absolute (``file:///...``) so messages say where it really is."""
    root = Path(path).expanduser().absolute()
    return LocalStore(root), f"file://{root.as_posix()}"


def _open_s3(uri: str, endpoint_url: str | None) -> tuple[ObjectStore, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not _BUCKET_RE.fullmatch(bucket):
        raise LakeError(
            f"lake URI {uri!r} does not name a valid bucket: use s3://BUCKET/PREFIX with a bucket name "
            "of 3-63 lowercase letters, digits, dots and hyphens"
        )
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
    return S3Store(client, bucket, prefix.strip("/"), uri, endpoint_url), uri
