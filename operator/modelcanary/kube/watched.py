"""A watch-fed copy of one resource's objects in a namespace (an informer).

One LIST, then a WATCH from the list's resourceVersion (with bookmarks), started again from
where it was when the server ends it, and from a new LIST when the server says that
version is gone (410) or the connection fails. The operator's tick reads the copy instead
of listing the namespace's ModelCanaries and InferenceServices on every tick (about 1 MB
of JSON per tick at 200 rollouts); its own status writes go into the copy at once, so the
next tick does not carry a resourceVersion older than its own write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from kubernetes import client
from kubernetes.watch import watch

from modelcanary.adapters.kube_client import KubeError, describe

Body = dict[str, Any]
log = logging.getLogger("modelcanary.watched")
WATCH_S = 240  # the server ends each watch after this long; it is resumed at once
RETRY_S = 1.0  # after a failed LIST or WATCH, wait this long before listing again
lines = cast(Callable[[Any], Iterator[str]], watch.iter_resp_lines)


class Watched:
    """The objects of RESOURCE (group, version, plural) in NAMESPACE by name, kept current
    by a watch in a thread of its own; `noticed` is called with each new body."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        resource: tuple[str, str, str],
        namespace: str,
        noticed: Callable[[Body], None] = lambda body: None,
    ) -> None:
        self.api, self.resource, self.namespace = api, resource, namespace
        self.noticed = noticed
        self.synced = threading.Event()  # set once the first LIST is in
        self.problem: str | None = None  # why the last LIST or WATCH failed (None: it did not)
        self._items: dict[str, Body] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{resource[2]}", daemon=True)

    @property
    def what(self) -> str:
        return f"{self.resource[2]} in {self.namespace}"

    def start(self) -> Watched:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the watch (its connection is shut, so the thread does not wait for data)."""
        self._stop.set()
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)

    def items(self, timeout: float = 0.0) -> dict[str, Body]:
        """The objects by name now (waiting up to TIMEOUT for the first LIST); KubeError
        if there has been no LIST yet, or the last one failed."""
        if not self.synced.wait(timeout) or (self.problem and not self._items):
            raise KubeError(self.problem or f"{self.what}: not listed yet")
        with self._lock:
            return dict(self._items)

    def wrote(self, read: Body, written: Body, versions: Sequence[str] = ()) -> None:
        """WRITTEN is what the server answered to the last of the writes (at VERSIONS) of an
        object read as READ: it replaces READ, or the watch's copy of an earlier one of
        those writes, but not a body someone else wrote since."""
        name = written.get("metadata", {}).get("name")
        _slim(written)
        with self._lock:
            current = self._items.get(name or "")
            ours = current is not None and _version(current) in versions
            if name and (current is read or ours):
                self._items[name] = written

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
            except Exception as exc:  # a failed request: list again after a pause
                if self._stop.is_set():
                    return
                problem = str(describe(exc, f"watching {self.what}"))
                if problem != self.problem:
                    log.warning("%s", problem)
                self.problem = problem
                version = None
                self._stop.wait(RETRY_S)

    def _list(self) -> str:
        """Replace the copy with a LIST; its resourceVersion."""
        listed: Any = self.api.list_namespaced_custom_object(
            *self.resource[:2], self.namespace, self.resource[2]
        )
        items = {item["metadata"]["name"]: _slim(item) for item in listed.get("items", [])}
        with self._lock:
            self._items = items
        self.problem = None
        self.synced.set()
        for body in items.values():
            self.noticed(body)
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str | None:
        """Apply the watch's events from VERSION until the server ends it; the version to
        go on from (None: list again)."""
        self._response = self.api.list_namespaced_custom_object(
            *self.resource[:2],
            self.namespace,
            self.resource[2],
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_S,
            _preload_content=False,
            _request_timeout=(10, WATCH_S + 30),
        )
        try:
            for line in lines(self._response):
                if not line.strip():
                    continue
                event = json.loads(line)
                body = event.get("object") or {}
                if event.get("type") == "ERROR":  # 410 Gone: too old to resume from
                    return None
                version = body.get("metadata", {}).get("resourceVersion") or version
                if event["type"] != "BOOKMARK":
                    self._apply(event["type"], body)
        finally:
            self._response.release_conn()
            self._response = None
        return version

    def _apply(self, kind: str, body: Body) -> None:
        """An event's body replaces the copy's, unless the copy is newer: the answer to one
        of our writes may reach the copy (`wrote`) before the watch brings an earlier one."""
        name = _slim(body)["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self._items.pop(name, None)
                return
            if _older(body, self._items.get(name)):
                return
            self._items[name] = body
        self.noticed(body)


def _version(body: Body) -> str | None:
    version = body.get("metadata", {}).get("resourceVersion")
    return str(version) if version is not None else None


def _older(body: Body, than: Body | None) -> bool:
    """BODY is an older version of THAN: etcd's resourceVersions are increasing integers
    (opaque to the API, so any that are not compare as not older)."""
    version, current = _version(body), _version(than) if than is not None else None
    if version is None or current is None or not (version.isdigit() and current.isdigit()):
        return False
    return int(version) < int(current)


def _slim(body: Body) -> Body:
    """BODY without its managedFields: a quarter of a ModelCanary's JSON that no reader of
    the copy needs (at a thousand rollouts, tens of MB kept)."""
    body.get("metadata", {}).pop("managedFields", None)
    return body
