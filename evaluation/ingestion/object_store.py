"""The S3 filesystem of every `s3://` location (evaluation.ingestion.files registers it with fsspec): s3fs,
where a call that finds the endpoint unreachable raises evaluation.ingestion.files.StoreUnavailable (one
line naming the endpoint, the operation and the key) after botocore's retries, and the calls after
it fail at once for STORE_DOWN_HOLD_S (each step of a run would otherwise wait out its own retries).
A module of its own so that s3fs is imported only where a location is on S3."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import botocore.exceptions
from botocore.handlers import add_expect_header
from fsspec.exceptions import FSTimeoutError
from s3fs import S3FileSystem

from evaluation.ingestion.files import STORE_DOWN_HOLD_S, StoreUnavailable

UNREACHABLE = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError,
               aiohttp.ClientConnectionError, asyncio.TimeoutError, FSTimeoutError, ConnectionError)
"""What an object store that does not answer raises (after botocore's retries)."""

_VERBS = {"put_object": "writing", "create_multipart_upload": "writing", "upload_part": "writing",
          "complete_multipart_upload": "writing", "copy_object": "writing", "get_object": "reading",
          "head_object": "reading", "list_objects_v2": "listing", "list_objects": "listing",
          "delete_object": "deleting", "delete_objects": "deleting", "head_bucket": "checking"}


class S3Store(S3FileSystem):
    """s3fs with one-line faults and a hold after the store was found unreachable (module docstring)."""

    retries = 1  # s3fs's own attempts (its loop would multiply botocore's retries, the only ones we want)
    _down: tuple[float, str] | None = None  # (when, why) the store was last found unreachable

    async def set_session(self, refresh=False, kwargs={}):  # noqa: B006 (s3fs's signature)
        s3 = await super().set_session(refresh, kwargs)
        # aiohttp waits for a "100 Continue" with no timeout at all: a frozen store would hang a PUT forever
        s3.meta.events.unregister("before-call.s3", add_expect_header)
        return s3

    async def _call_s3(self, method, *akwarglist, **kwargs):
        target = f"s3://{kwargs.get('Bucket', '')}/{kwargs.get('Key', kwargs.get('Prefix', ''))}".rstrip("/")
        verb = _VERBS.get(method, method.replace("_", " "))
        if self._down and (ago := time.monotonic() - self._down[0]) < STORE_DOWN_HOLD_S:
            raise StoreUnavailable(f"object store {self._endpoint()} unreachable while {verb} {target}: it did not "
                                   f"answer {ago:.0f} s ago ({self._down[1]}); not asked again for "
                                   f"{STORE_DOWN_HOLD_S:.0f} s")
        start = time.monotonic()
        try:
            out = await super()._call_s3(method, *akwarglist, **kwargs)
        except UNREACHABLE as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            self._down = (time.monotonic(), reason)
            raise StoreUnavailable(f"object store {self._endpoint()} unreachable while {verb} {target}: {reason} "
                                   f"(gave up after {time.monotonic() - start:.0f} s)") from exc
        self._down = None
        return out

    def _endpoint(self) -> str:
        client = self._s3
        return (getattr(getattr(client, "meta", None), "endpoint_url", None) or self.endpoint_url
                or self.client_kwargs.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or "s3")
