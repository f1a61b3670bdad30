"""XLA compilations: the persistent compilation cache (on by default) and a compile counter.

A sweep is hundreds of small trainings of one (architecture, task shape) family; compiling is a
large part of a small sweep's time. Two things keep it down:

* the conditions are data (masks, per-layer vectors, keys, batch indices), so one program per
  family serves every run of it; :class:`CompileCounter` checks this, and ``transferbench run``
  reports the counts;
* the persistent compilation cache keeps compiled programs on disk between processes
  (docs/performance.md). It lives in ``$TRANSFERBENCH_CACHE_DIR`` (default ``~/.cache/transferbench/jax``); set
  ``TRANSFERBENCH_COMPILE_CACHE=0`` to turn it off.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
from typing import Callable, Iterable, Iterator

import jax
from jax import monitoring

_BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'


def cache_root(switch: str) -> pathlib.Path | None:
  """``$TRANSFERBENCH_CACHE_DIR`` (default ``~/.cache/transferbench``), or None when the
  environment variable ``switch`` turns this cache off (0, false, no, off)."""
  if os.environ.get(switch, '1').strip().lower() in ('0', 'false', 'no', 'off'):
    return None
  return pathlib.Path(os.environ.get('TRANSFERBENCH_CACHE_DIR') or
                      pathlib.Path.home() / '.cache' / 'transferbench')


def cache_dir() -> pathlib.Path | None:
  """The persistent cache directory, or None when it is turned off by the environment."""
  root = cache_root('TRANSFERBENCH_COMPILE_CACHE')
  return None if root is None else root / 'jax'


def enable_persistent_cache() -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache (unless turned off); idempotent.

  Programs that took at least 0.1 s to compile are kept (JAX's default of 1 s would skip most
  of a small sweep's programs).

  Returns:
    The cache directory, or None if the cache is off.
  """
  path = cache_dir()
  if path is None or jax.config.jax_compilation_cache_dir:  # off, or already set by the user
    return path if path is None else pathlib.Path(jax.config.jax_compilation_cache_dir)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None  # A read-only home: compile every time rather than fail.
  jax.config.update('jax_compilation_cache_dir', str(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return path


@contextlib.contextmanager
def persistent_cache_off() -> Iterator[None]:
  """Compiles without the persistent cache inside the block (JAX's default), then turns it back.

  JAX decides once per process whether the cache is used; its private ``reset_cache`` makes it
  decide again (without it, the flag would be ignored after the first compilation).
  """
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  before = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    jax.config.update('jax_enable_compilation_cache', before)
    compilation_cache.reset_cache()


class _Listener:
  """Process-wide counts of JAX's compile events (listeners cannot be unregistered)."""

  def __init__(self):
    self.lock = threading.Lock()
    self.counts = {_BACKEND_COMPILE_EVENT: 0, _CACHE_HIT_EVENT: 0}
    monitoring.register_event_duration_secs_listener(self._on_duration)
    monitoring.register_event_listener(self._on_event)

  def _on_duration(self, event: str, duration: float, **kwargs) -> None:
    del duration, kwargs
    if event == _BACKEND_COMPILE_EVENT:
      with self.lock:
        self.counts[event] += 1

  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == _CACHE_HIT_EVENT:
      with self.lock:
        self.counts[event] += 1


_listener: _Listener | None = None


def _get_listener() -> _Listener:
  global _listener
  if _listener is None:
    _listener = _Listener()
  return _listener


def program_count(programs: Iterable[Callable]) -> int:
  """Number of compiled specialisations held by jitted functions (compiled or loaded from disk)."""
  return sum(fn._cache_size() for fn in programs)  # pylint: disable=protected-access


class CompileCounter:
  """Counts XLA compilations while it is open (``with CompileCounter() as c: ...; c.xla``).

  Attributes:
    xla: backend compilations (every jitted program and every eager op's first use per shape),
      persistent-cache hits excluded.
    cache_hits: programs loaded from the persistent cache instead of compiled.
  """

  def __init__(self):
    self._listener = _get_listener()
    self._start = dict(self._listener.counts)
    self._end: dict | None = None

  def __enter__(self) -> 'CompileCounter':
    self._start = dict(self._listener.counts)
    self._end = None
    return self

  def __exit__(self, *exc) -> None:
    self._end = dict(self._listener.counts)

  def _delta(self, event: str) -> int:
    end = self._end if self._end is not None else self._listener.counts
    return end[event] - self._start[event]

  @property
  def xla(self) -> int:
    return self._delta(_BACKEND_COMPILE_EVENT)

  @property
  def cache_hits(self) -> int:
    return self._delta(_CACHE_HIT_EVENT)
