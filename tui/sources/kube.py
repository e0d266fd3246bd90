"""The live pod source: list, then watch the Kubernetes API, and keep going.

Implements ``PodSource`` with the official (sync) ``kubernetes`` client, so
``events()`` runs in a thread worker. The loop follows the API concepts for
watches: LIST and remember the resourceVersion, WATCH from it with bookmarks,
move the resourceVersion forward on every event (bookmarks too), re-LIST when
the server answers 410 Gone, and reconnect with exponential backoff when the
connection drops, saying so in a STATUS event each time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tui.cluster import ClusterError, KubeTarget, describe_api_error, load_api_client, pod_info
from tui.sources.base import PodEvent, PodInfo

# The server ends a watch after this many seconds; we then re-watch from the
# last resourceVersion. Short enough that a silently dead connection is noticed.
WATCH_TIMEOUT_S = 240
# Pods per LIST page (see KubePodSource._list).
LIST_PAGE = 500
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0


class _Stream:
    """The state of one ``events()`` call."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.watch: Any = None


class KubePodSource:
    """Pods of one kubeconfig context as a stream of ``PodEvent``.

    Args:
        kubeconfig: path, or None for $KUBECONFIG / ~/.kube/config / in-cluster.
        context: kubeconfig context, or None for the current one.
        loader: how to build the client (tests pass their own); defaults to
            ``tui.cluster.load_api_client``.
    """

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        loader: Callable[[str | None, str | None], KubeTarget] = load_api_client,
        backoff_start: float = BACKOFF_START_S,
        backoff_max: float = BACKOFF_MAX_S,
        watch_timeout: int = WATCH_TIMEOUT_S,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._loader = loader
        self._target = loader(kubeconfig, context)
        self._lock = threading.Lock()
        # One entry per running events() call: the App restarts its watch (stop, then a
        # new events()) while the old generator may still be blocked in a read, so each
        # call has its own stop flag and watch, and stop() ends all current ones.
        self._streams: set[_Stream] = set()
        self._generation = 0  # bumped by use_context so a running events() re-lists
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.watch_timeout = watch_timeout
        #: The resourceVersion the next watch starts from (exposed for tests).
        self.resource_version: str | None = None

    # -------------------------------------------------- contexts

    @property
    def current_context(self) -> str:
        return self._target.context

    @property
    def default_namespace(self) -> str:
        return self._target.namespace

    @property
    def api_client(self) -> Any:
        return self._target.api_client

    def contexts(self) -> list[str]:
        return list(self._target.contexts)

    def use_context(self, name: str) -> None:
        """Switch contexts; a running ``events()`` re-lists from the new cluster.

        Raises:
            ClusterError: no such context, or its config is unusable.
        """
        target = self._loader(self._kubeconfig, name)
        with self._lock:
            self._target = target
            self._generation += 1
            for st in self._streams:
                self._interrupt(st)

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._target.api_client)

    # -------------------------------------------------- the stream

    def stop(self) -> None:
        """End every running ``events()`` (from any thread)."""
        with self._lock:
            for st in self._streams:
                st.stop.set()
                self._interrupt(st)

    def _interrupt(self, st: _Stream) -> None:
        w = st.watch
        if w is None:
            return
        w.stop()  # shuts the socket down, unblocking the reader
        if getattr(w, "_resp", None) is None:
            # The watch request is not connected yet (stream() resets its stop flag
            # when it starts): keep stopping until the events loop lets go of it.
            def repeat() -> None:
                deadline = time.monotonic() + 10
                while st.watch is w and time.monotonic() < deadline:
                    w.stop()
                    time.sleep(0.05)

            threading.Thread(target=repeat, daemon=True, name="watch-stop").start()

    def events(self, namespace: str | None, selector: str | None) -> Iterator[PodEvent]:
        """RESET with every pod, then ADDED/MODIFIED/DELETED, STATUS on trouble.

        ``namespace=None`` means all namespaces. Runs until ``stop()``.
        """
        st = _Stream()
        with self._lock:
            self._streams.add(st)
        try:
            yield from self._events(st, namespace, selector)
        finally:
            with self._lock:
                self._streams.discard(st)
                st.watch = None

    def _events(
        self, st: _Stream, namespace: str | None, selector: str | None
    ) -> Iterator[PodEvent]:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        backoff = self.backoff_start
        need_list = True
        troubled = False
        while not st.stop.is_set():
            generation = self._generation
            api = self.core()
            kwargs: dict[str, Any] = {}
            if selector:
                kwargs["label_selector"] = selector
            if namespace:
                fn: Any = api.list_namespaced_pod
                args: tuple = (namespace,)
            else:
                fn = api.list_pod_for_all_namespaces
                args = ()
            try:
                if need_list:
                    pods, self.resource_version = self._list(fn, args, kwargs)
                    yield PodEvent("RESET", pods=pods)
                    need_list = False
                if troubled:
                    yield PodEvent(
                        "STATUS", message=f"watching pods again ({self.current_context})"
                    )
                    troubled = False
                w = watch.Watch()
                with self._lock:
                    if generation != self._generation or st.stop.is_set():
                        need_list = True
                        continue
                    st.watch = w
                got_event = False
                for ev in w.stream(
                    fn,
                    *args,
                    **kwargs,
                    resource_version=self.resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_timeout,
                    _request_timeout=(10, self.watch_timeout + 30),
                ):
                    typ = ev.get("type")
                    if typ == "BOOKMARK":
                        self.resource_version = w.resource_version or self.resource_version
                        continue
                    obj = ev.get("object")
                    if obj is None or typ not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    self.resource_version = obj.metadata.resource_version or self.resource_version
                    got_event = True
                    backoff = self.backoff_start
                    yield PodEvent(typ, pod=pod_info(obj))
                with self._lock:
                    st.watch = None
                if generation != self._generation:
                    need_list = True  # context switched: start over on the new cluster
                    backoff = self.backoff_start
                elif got_event:
                    backoff = self.backoff_start
            except ApiException as e:
                with self._lock:
                    st.watch = None
                if st.stop.is_set():
                    break
                if e.status == 410:
                    # Our resourceVersion was compacted away: the only correct
                    # recovery is a fresh LIST (the RESET replaces the table).
                    need_list = True
                    yield PodEvent(
                        "STATUS", message="pod list out of date (410 Gone): listing again"
                    )
                    continue
                troubled = True
                yield PodEvent("STATUS", message=self._retry_message(e, backoff, need_list))
                if st.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max)
            except ClusterError as e:
                yield PodEvent("STATUS", message=str(e))
                if st.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max)
            except Exception as e:  # noqa: BLE001 - urllib3/socket/ssl errors: all mean "link down"
                with self._lock:
                    st.watch = None
                if st.stop.is_set():
                    break
                if generation != self._generation:
                    need_list = True
                    continue
                troubled = True
                yield PodEvent("STATUS", message=self._retry_message(e, backoff, need_list))
                if st.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max)

    def _list(
        self, fn: Any, args: tuple, kwargs: dict[str, Any]
    ) -> tuple[tuple[PodInfo, ...], str]:
        """LIST in pages, keeping only PodInfo of each page.

        The client decodes a whole response into objects several times its JSON
        size; one 5,000-pod LIST cost ~100 MiB of console memory, pages of
        LIST_PAGE cost ~25 MiB. All pages come from one snapshot (the API
        server's continue token), so the last page's resourceVersion is the list's;
        an expired token is a 410 and the caller lists again.
        """
        infos: list[PodInfo] = []
        token = None
        while True:
            page = fn(*args, **kwargs, limit=LIST_PAGE, _continue=token, _request_timeout=(10, 60))
            infos.extend(pod_info(p) for p in page.items)
            token = page.metadata._continue
            if not token:
                return tuple(sorted(infos, key=lambda p: p.key)), page.metadata.resource_version

    def _retry_message(self, exc: BaseException, delay: float, listing: bool) -> str:
        what = "list pods" if listing else "watch pods"
        prefix = "pod list failed" if listing else "watch dropped"
        desc = describe_api_error(exc, what)
        return f"{prefix}: {desc} Reconnecting in {delay:g} s."

    # -------------------------------------------------- one-off lookups

    def read_pod(self, namespace: str, name: str) -> PodInfo:
        """The pod as it is now (used to follow a restarted container)."""
        return pod_info(self.core().read_namespaced_pod(name, namespace, _request_timeout=(10, 30)))

    def read_node(self, name: str) -> Any:
        return self.core().read_node(name, _request_timeout=(10, 30))
